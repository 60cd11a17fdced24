"""lab.exercises: right answers pass, wrong ones get a hint without the answer, bad ids fail in one line."""
import pytest

from lab.errors import ConfigError
from lab.exercises import EXERCISES, check, question

# one right answer per exercise (written here independently of lab/exercises.py), and a wrong one
RIGHT = {
    "04.ring-bytes": [7_000_000, lambda n, B: 2 * (n - 1) / n * B],
    "00.ring-ratio": [4 / 3],
    "07.topk-bytes": [8000],
    "07b.link-seconds": [0.3496416, lambda n, B, mbps: 2 * (n - 1) / n * B * 8 / (mbps * 1e6)],
    "03b.reduce-scatter-bytes": [3_500_000, lambda n, B: (n - 1) / n * B],
    "10b.talk-bytes": [2304, lambda n, T, N, d: (n - 1) * T * N * (d + 2) * 4],
    "01.xavier-std": [0.125, lambda fan_in, fan_out: (2 / (fan_in + fan_out)) ** 0.5],
    "02.conv-params": [320, lambda c_in, c_out, k: c_out * (c_in * k * k + 1)],
    "03.lstm-params": [99_328, lambda i, h: 4 * h * (i + h + 2)],
    "05.ps-bytes": [56_000_000, lambda n, B: 2 * (n - 1) * B],
    "06.wait-share": [0.5],
    "08.local-bytes": [750_000, lambda n, B, H: 2 * (n - 1) / n * B / H],
    "09.bubble": [3 / 11, lambda s, m: (s - 1) / (m + s - 1)],
    "10.return": [(1 - 0.99 ** 10) / (1 - 0.99), lambda T, g: sum(g ** t for t in range(T))],
    "11.steps-redone": [17],
    "12.crossover": [308],
    "13.ring-seconds": [0.5614, lambda n, B, a, b: 2 * (n - 1) * a + 2 * (n - 1) / n * B / b],
    "14.asha-steps": [630],
}
WRONG = {
    "04.ring-bytes": [8_000_000, lambda n, B: (n - 1) / n * B, lambda n, B: 2 * B],
    "00.ring-ratio": [1.5],
    "07.topk-bytes": [12000],
    "07b.link-seconds": [0.699, lambda n, B, mbps: 2 * (n - 1) / n * B / (mbps * 1e6)],
    "03b.reduce-scatter-bytes": [7_000_000, lambda n, B: 2 * (n - 1) / n * B, lambda n, B: B / n],
    "10b.talk-bytes": [3072, lambda n, T, N, d: (n - 1) * T * N * d * 4],
    "01.xavier-std": [1 / 64, lambda fan_in, fan_out: (1 / fan_in) ** 0.5],
    "02.conv-params": [288, lambda c_in, c_out, k: c_out * c_in * k * k],
    "03.lstm-params": [98_816, lambda i, h: 4 * h * (i + h + 1)],
    "05.ps-bytes": [64_000_000, lambda n, B: 2 * n * B],
    "06.wait-share": [0.25],
    "08.local-bytes": [6_000_000, lambda n, B, H: 2 * (n - 1) / n * B],
    "09.bubble": [3 / 8, lambda s, m: (s - 1) / m],
    "10.return": [10, lambda T, g: g ** T],
    "11.steps-redone": [37],
    "12.crossover": [1540],
    "13.ring-seconds": [0.5600, lambda n, B, a, b: (n - 1) * a + (n - 1) / n * B / b],
    "14.asha-steps": [810],
}


def _texts(answer):
    """The ways an answer may be written (to make sure a hint contains none of them)."""
    if callable(answer):
        return []
    return {f"{answer}", f"{answer:,}", f"{float(answer):g}", f"{answer:.2f}", f"{answer:.3g}"}


@pytest.mark.parametrize("ex_id", sorted(RIGHT))
def test_right_answers_pass(ex_id, capsys):
    for answer in RIGHT[ex_id]:
        assert check(ex_id, answer) is True
        assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("ex_id", sorted(WRONG))
def test_wrong_answers_get_a_hint_not_the_answer(ex_id, capsys):
    ex = EXERCISES[ex_id]
    for answer in WRONG[ex_id] * 3:  # repeated: every hint in turn
        assert check(ex_id, answer) is False
        out = capsys.readouterr().out
        assert "✗" in out and "Hint:" in out
        for right in RIGHT[ex_id]:
            for text in _texts(right):
                assert text not in out.replace(ex.question, ""), (ex_id, text, out)


def test_every_exercise_has_a_checked_right_answer():
    missing = sorted(set(EXERCISES) - set(RIGHT))
    assert not missing, (f"exercises without a right answer in this test: {missing} "
                         "(add a right and a wrong answer to RIGHT and WRONG above)")


def test_unanswered_prints_the_question_and_does_not_fail(capsys):
    for ex_id in EXERCISES:
        assert check(ex_id, None) is None
        out = capsys.readouterr().out
        assert "not answered yet" in out and question(ex_id) in out and "Hint:" in out


def test_wrong_type_gets_a_hint(capsys):
    assert check("04.ring-bytes", "seven million") is False
    out = capsys.readouterr().out
    assert "expected a number or a function" in out and "Hint:" in out
    assert check("04.ring-bytes", lambda n: n) is False  # wrong arity
    assert check("00.ring-ratio", True) is False  # a bool is not a number


def test_unknown_id_is_one_line_listing_the_valid_ids():
    with pytest.raises(ConfigError) as e:
        check("99.nothing", 1)
    msg = str(e.value)
    assert "\n" not in msg and "exercise_id" in msg and "04.ring-bytes" in msg
