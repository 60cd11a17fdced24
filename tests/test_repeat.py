"""Every saved run can be repeated: its meta.json records where it came from (commit, package
versions, machine, seeds, command), and `python -m lab run --from runs/<id>` repeats it and says how
far the new curve is from the old (`lab.compare.curve_distance`)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import provenance
from lab.compare import curve_distance, format_distance


def lab(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ)


def recs(losses, rank=0, metric=None, start=0):
    out = [{"step": start + i, "rank": rank, "loss": v, "t": 0.1 * i} for i, v in enumerate(losses)]
    if metric is not None:
        out[-1]["test_acc"] = metric
    return out


# -- curve_distance on synthetic records ------------------------------------------------------------
def test_identical_curves_are_an_exact_repeat():
    a = recs([2.0, 1.5, 1.0], metric=0.8) + recs([2.1, 1.6, 1.1], rank=1)
    d = curve_distance(a, [dict(r) for r in reversed(a)])   # order of records does not matter
    assert d["exact"] and d["steps"] == 3 and d["max_abs"] == 0 and d["mean_abs"] == 0
    assert d["metric"] == "test_acc" and d["final_diff"] == 0
    assert format_distance(d).startswith("exact repeat: loss on worker 0 over 3 common steps")


def test_distance_is_max_and_mean_over_rank0_common_steps():
    a = recs([2.0, 1.5, 1.0, 0.5], metric=0.80) + recs([9.0, 9.0, 9.0], rank=1)
    b = recs([2.0, 1.7, 0.9], metric=0.75) + recs([0.0, 0.0, 0.0], rank=1)   # rank 1 is not compared
    d = curve_distance(a, b)
    assert not d["exact"] and d["steps"] == 3 and d["only_a"] == 1 and d["only_b"] == 0
    assert math.isclose(d["max_abs"], 0.2) and math.isclose(d["mean_abs"], 0.1)
    assert math.isclose(d["final_diff"], 0.05) and d["final_a"] == 0.80 and d["final_b"] == 0.75
    line = format_distance(d)
    assert line.startswith("differs:") and "only in the original 1" in line and "0.8000 -> 0.7500" in line
    assert curve_distance(a, b, rank=1)["max_abs"] == 9.0


def test_same_losses_but_other_final_metric_or_steps_is_not_exact():
    assert not curve_distance(recs([1.0, 0.5], metric=0.9), recs([1.0, 0.5], metric=0.8))["exact"]
    assert not curve_distance(recs([1.0, 0.5]), recs([1.0, 0.5, 0.25]))["exact"]
    assert curve_distance(recs([1.0, 0.5]), recs([1.0, 0.5]))["exact"]   # no metric at all: losses decide
    d = curve_distance(recs([1.0, 0.5], metric=0.9), recs([1.0, 0.5]))   # the repeat never evaluated
    assert not d["exact"] and d["final_diff"] is None and "test_acc only in the original" in format_distance(d)
    assert curve_distance(recs([float("nan")]), recs([float("nan")]))["max_abs"] == 0
    d = curve_distance(recs([1.0]), recs([1.0], start=5))
    assert d["steps"] == 0 and not d["exact"] and d["max_abs"] is None and "no common steps" in format_distance(d)


def test_flags_given_with_from_override_the_saved_config():
    import argparse
    from lab import cli
    from lab.config import RunConfig
    p = argparse.ArgumentParser()
    cli._add_run_args(p)
    saved = RunConfig().replace(**{"steps": 30, "data.seed": 3, "optim.lr": 0.02})
    cfg = cli.config_from_args(p.parse_args(["--steps", "20"]), saved)
    assert cfg.steps == 20 and cfg.data.seed == 3 and cfg.optim.lr == 0.02 and saved.steps == 30


# -- provenance ------------------------------------------------------------------------------------
def test_provenance_outside_a_git_checkout_has_no_commit(tmp_path):
    assert provenance.commit(tmp_path) is None
    p = provenance.gather("cmd")
    assert p["command"] == "cmd" and {"python", "torch", "numpy", "ipyparallel", "lab"} <= set(p["packages"])
    assert {"hostname", "platform", "cpus", "gpus"} <= set(p["machine"]) and isinstance(p["machine"]["gpus"], list)


def test_bench_results_share_the_provenance_helpers():
    from lab.bench import results
    assert results.commit() == (provenance.commit(results.ROOT) or "unknown")
    assert results.packages()["torch"] == provenance.packages()["torch"]


# -- end to end: run, then repeat --------------------------------------------------------------------
@pytest.fixture(scope="module")
def original(tmp_path_factory):
    runs = tmp_path_factory.mktemp("repeat") / "runs"
    out = lab("run", "--strategy", "sync", "--workers", "2", "--steps", "30", "--seed", "3", "--runs-dir", str(runs))
    assert out.returncode == 0, out.stderr[-3000:]
    (path,) = runs.iterdir()
    return path


def test_saved_run_records_commit_packages_machine_seeds_and_command(original):
    meta = json.loads((original / "meta.json").read_text())
    p = meta["provenance"]
    assert p["commit"] is None or len(p["commit"].split("+")[0]) == 40
    assert p["commit"] == provenance.commit()   # nobody commits during the test: the same checkout state
    assert {"python", "torch", "numpy", "ipyparallel", "lab"} <= set(p["packages"])
    assert p["machine"]["cpus"] == os.cpu_count() and p["machine"]["hostname"]
    assert p["seeds"] == {"data.seed": 3, "workers": {"0": 4, "1": 5}}   # lab.train.worker_seed
    assert p["command"].startswith("python -m lab run --strategy sync --workers 2 --steps 30 --seed 3")


def test_repeat_from_a_saved_run_is_exact_on_cpu_sync(original):
    out = lab("run", "--from", str(original), "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    s = json.loads(out.stdout)
    assert s["repeat_of"] == original.name and s["workers"] == 2 and s["steps"] == 30
    d = s["distance"]
    # sync on CPU with a fixed seed is deterministic: every step's loss and the final accuracy are identical
    assert d["exact"] and d["steps"] == 30 and d["max_abs"] == 0 and d["final_diff"] == 0, d
    (new,) = [p for p in original.parent.iterdir() if p != original]
    meta = json.loads((new / "meta.json").read_text())
    assert meta["repeat_of"] == original.name and meta["repeat_distance"]["exact"]
    assert json.loads((new / "config.json").read_text())["data"]["seed"] == 3


def test_bad_from_is_one_line_exit_2(tmp_path, capsys):
    from lab import cli   # in process: the error comes before any cluster starts
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    for where in (str(tmp_path / "nope"), "no-such-id", str(broken)):
        assert cli.main(["run", "--from", where, "--runs-dir", str(tmp_path)]) == 2, where
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --from must be") and where in lines[0], err
    out = lab("run", "--from", str(tmp_path / "nope"), timeout=120)   # and the same from the shell
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]   # nothing started, nothing saved
