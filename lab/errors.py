"""Errors a user may see: each renders as one line in a notebook, never a traceback."""


class LabError(Exception):
    """Base class: IPython shows `_render_traceback_` instead of a traceback."""

    def _render_traceback_(self):
        return [f"{type(self).__name__}: {self}"]


class ConfigError(LabError, ValueError):
    """A knob got a value outside its allowed range.

    The message always names the knob and what it accepts, e.g.
    ``workers must be an integer >= 1 (got 0)``.
    """

    def __init__(self, knob: str, allowed: str, got=None):
        self.knob, self.allowed, self.got = knob, allowed, got
        super().__init__(f"{knob} must be {allowed} (got {got!r})")


class WorkerError(LabError, RuntimeError):
    """A worker died, hung or raised: the run stops with this instead of hanging."""


def check(ok: bool, knob: str, allowed: str, got) -> None:
    """Raise ConfigError(knob, allowed, got) unless `ok`."""
    if not ok:
        raise ConfigError(knob, allowed, got)


def check_choice(value: str, choices, knob: str) -> None:
    """Raise ConfigError unless `value` is one of `choices` (a registry's keys)."""
    names = sorted(choices)
    check(value in choices, knob, "one of " + ", ".join(names), value)
