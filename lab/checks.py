"""Chapters check what they teach: one readable line per claim, a one-line error when it fails.

    from lab.checks import verify
    verify("top-k 1% with error feedback beats top-k without", ef > no_ef, f"{ef:.3f} vs {no_ef:.3f}")
    # ✓ top-k 1% with error feedback beats top-k without (0.975 vs 0.964)
"""
from lab.errors import LabError


class CheckFailed(LabError, AssertionError):
    """A chapter's lesson did not hold: the message names the claim and the figures."""


def verify(claim: str, ok: bool, detail: str = "") -> None:
    """Print `✓ claim (detail)` when `ok`, else raise CheckFailed naming the claim."""
    line = f"{claim} ({detail})" if detail else claim
    if not ok:
        raise CheckFailed(f"✗ {line}")
    print(f"✓ {line}")


def raises(claim: str, fn, error=Exception) -> BaseException:
    """Verify that `fn()` raises `error`; print the claim and the error's message, return the error."""
    try:
        fn()
    except error as e:
        verify(claim, True, f"{type(e).__name__}: {e}")
        return e
    raise CheckFailed(f"✗ {claim} (nothing raised)")
