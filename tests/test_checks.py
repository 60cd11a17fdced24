"""The chapters' check helper: a passing claim prints one line, a failing one raises naming the claim."""
import pytest

from lab.checks import CheckFailed, raises, verify
from lab.errors import ConfigError


def test_passing_check_prints_one_line(capsys):
    verify("error feedback helps", 0.975 > 0.964, "0.975 vs 0.964")
    assert capsys.readouterr().out == "✓ error feedback helps (0.975 vs 0.964)\n"


def test_failing_check_raises_naming_the_claim(capsys):
    with pytest.raises(AssertionError, match="error feedback helps.*0.950 vs 0.964") as info:
        verify("error feedback helps", 0.950 > 0.964, "0.950 vs 0.964")
    assert isinstance(info.value, CheckFailed) and "\n" not in str(info.value)
    assert info.value._render_traceback_() == [f"CheckFailed: {info.value}"]
    assert capsys.readouterr().out == ""


def test_raises_passes_only_when_the_call_raises(capsys):
    def bad():
        raise ConfigError("workers", "an integer >= 1", 0)

    err = raises("a wrong knob raises", bad, ValueError)
    assert isinstance(err, ConfigError)
    assert capsys.readouterr().out.startswith("✓ a wrong knob raises (ConfigError: workers must be")
    with pytest.raises(CheckFailed, match="a wrong knob raises"):
        raises("a wrong knob raises", lambda: None, ValueError)
