"""The per-step record schema (`lab.records`): every key a real record carries is declared, and every
field the dashboards, run summaries and comparisons read exists in it (issue 14, item 5).

Real records come from `lab.train.Trainer` on two local processes (`lab.procs`, no ipyparallel),
once per registered strategy and once per task kind, with a live change and a compressor, so the
strategies' and tasks' extras are all seen.
"""
import ast
from pathlib import Path

import pytest

from lab import records
from lab.config import RunConfig
from lab.errors import LabError
from lab.strategies import STRATEGIES

ROOT = Path(__file__).resolve().parent.parent
QUICK = {"steps": 6, "eval_every": 3, "data.batch_size": 16}


def _strategy(name):
    extra = {"strategy.compression.name": "topk"} if name == "compressed" else {}
    return RunConfig().replace(**{**QUICK, "model.name": "mlp", "strategy.name": name, **extra})


CASES = {f"digits/{name}": (lambda name=name: _strategy(name)) for name in STRATEGIES.names()}
CASES["text/lstm"] = lambda: RunConfig().replace(**{**QUICK, "data.name": "text", "model.name": "lstm",
                                                    "data.seq_len": 16})
CASES["cartpole/actor_critic"] = lambda: RunConfig().replace(**{**QUICK, "data.name": "cartpole",
                                                               "model.name": "actor_critic",
                                                               "data.n_envs": 2, "data.batch_size": 8})


@pytest.fixture(scope="module")
def group():
    from lab.procs import Group
    with Group(2, timeout=180) as g:
        yield g


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_key_a_real_record_carries_is_declared(group, case):
    from lab.procs import train
    out = train(CASES[case](), world=group, changes={2: {"optim.lr": 0.002}}, timeout=180)
    recs = [r for o in out for r in o["records"]]
    assert len(recs) == 2 * QUICK["steps"]
    keys = {k for r in recs for k in r} | {k for o in out for k in o["after_last_step"]}
    assert not [k for k in keys if k not in records.FIELDS], "undeclared record fields"
    assert "changes" in keys and records.counters()[0] in keys
    assert any(k in keys for k in records.held_out()), "an evaluation step carries a held-out metric"


def test_check_names_an_undeclared_field_and_declare_is_one_meaning_per_name():
    assert records.check({"loss": 1.0, "step": 0}) == {"loss": 1.0, "step": 0}
    with pytest.raises(LabError, match="'bogus'"):
        records.check({"loss": 1.0, "bogus": 2})
    records.declare("loss", "", "lower", records.FIELDS["loss"].help, label=records.FIELDS["loss"].label)  # same: fine
    with pytest.raises(LabError, match="declared twice"):
        records.declare("loss", "", "higher", "a different meaning")


def test_schema_answers_direction_units_and_titles():
    assert records.higher_is_better("test_acc") is True and records.higher_is_better("perplexity") is False
    assert records.higher_is_better("rank") is None
    assert records.held_out()[0] == "test_acc" and "return" in records.held_out()
    assert set(records.counters()) >= {"bytes_sent", "bytes_recv", "messages", "comm_s", "wait_s", "sim_link_s"}
    assert records.axis_title("throughput", unit="tokens") == "throughput (tokens/s)"
    assert records.axis_title("bytes_sent", prefix="K") == "bytes sent (KB)"
    with pytest.raises(LabError, match="no record field"):
        records.axis_title("nope")


def test_ledger_fields_are_the_declared_counters():
    from dataclasses import fields
    from lab.comm import Ledger
    assert {f.name for f in fields(Ledger)} <= set(records.counters())


def _keys_read(path: Path) -> set:
    """String keys a module reads from a record: r["k"], r.get("k"), rec[...], record.get(...)."""
    names = {"r", "rec", "record"}
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) in names \
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            out.add(node.slice.value)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and getattr(node.func.value, "id", None) in names and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            out.add(node.args[0].value)
    return out


def test_dashboard_metrics_exist_in_the_schema():
    from widgets import dashboard
    used = {f for _, fields, _ in dashboard.LINES.values() for f in fields} | set(dashboard.BREAKDOWN)
    assert not used - set(records.FIELDS)
    assert dashboard.y_title(("throughput",), "tokens") == "throughput (tokens/s)"
    assert dashboard.y_title(("bytes_sent", "bytes_recv"), prefix="K") == "KB"


@pytest.mark.parametrize("module", ["widgets/dashboard.py", "lab/runs.py", "lab/compare.py"])  # (arena reads through compare)
def test_every_record_key_a_reader_uses_is_declared(module):
    used = _keys_read(ROOT / module)
    assert {"step", "bytes_sent"} <= used  # the scan sees the reads
    assert not used - set(records.FIELDS), f"{module} reads undeclared record fields"
