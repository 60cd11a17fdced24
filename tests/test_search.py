"""Hyperparameter search (lab.search): bad input in one line before anything starts; a tiny grid
search with ASHA on two 1-worker groups prunes something, saves and reloads; a trial whose
worker dies fails in its row and the search goes on. One 2-engine cluster for the module."""
import pytest

from lab.config import RunConfig
from lab.errors import ConfigError
from lab.search import Search, load


@pytest.fixture(scope="module")
def cluster(cluster_factory):
    return cluster_factory(2)


def test_bad_input_is_one_line_before_anything_starts(cluster, tmp_path):
    base = RunConfig(steps=20, runs_dir=str(tmp_path))
    cases = [({}, {}, "space"), ({"nope": [1]}, {}, "knob"), ({"lr": [0.01, -1.0]}, {}, "lr"),
             ({"lr": []}, {}, "lr"), ({"strategy": ["sync", "bogus"]}, {}, "strategy"),
             ({"lr": (1e-4, 1e-1, True)}, {}, "lr"),                  # a range in a grid
             ({"lr": [0.01]}, {"groups": 3}, "groups"),               # more groups than engines
             ({"lr": [0.01]}, {"method": "random"}, "trials"), ({"lr": [0.01]}, {"pruner": "hyper"}, "pruner")]
    for space, kw, knob in cases:
        with pytest.raises(ConfigError, match=knob) as e:
            Search.start(cluster, space, base=base, **kw)
        assert "\n" not in str(e.value)
    assert not list(tmp_path.iterdir()), "nothing may start (or be saved) on bad input"
    assert not getattr(cluster, "groups", None), "the cluster was not split"


def test_tiny_asha_search_prunes_saves_and_reloads(cluster, tmp_path):
    base = RunConfig(steps=40, eval_every=5, runs_dir=str(tmp_path)).replace(model="mlp")
    seen = []
    s = Search.start(cluster, {"lr": [1e-2, 3e-3, 1e-5, 3e-6, 1e-6]}, base=base, pruner="asha", min_steps=5,
                     reduction_factor=2, groups=2, on_update=lambda s: seen.append(s.counts()["running"]))
    assert len(s.groups) == 2 and s.n_trials == 5
    from widgets.search import GREY, SearchView
    view = SearchView(s)   # redrawn by the search's callbacks while it runs
    s.wait(timeout=300)
    states = [t.state for t in s.trials]
    assert len(states) == 5 and "pruned" in states and "failed" not in states, s.table()
    assert max(running for running in seen) == 2, "two trials should train at once"
    pruned = [t for t in s.trials if t.state == "pruned"]
    # trials wait at each rung until ASHA decided (the first hold may land a few steps late on a
    # loaded machine: a 1-worker MLP step is quicker than the round trip that schedules it)
    # (a trial the notebook polls late, on a loaded machine, can be pruned at its last report: <= 40)
    assert all(t.steps <= 40 for t in pruned) and any(t.steps in (5, 10, 20) for t in pruned), \
        [(t.number, t.steps) for t in pruned]
    assert s.total_steps < 5 * 40
    assert s.best is not None and s.best.params["optim.lr"] in (1e-2, 3e-3) and s.best.value > 0.5
    assert "callback_error" not in s.info, s.info["callback_error"]
    view.update(force=True)
    lines = {int(tr.name.split()[0][1:]): tr for tr in view.curves.data}
    assert sorted(lines) == [t.number for t in s.trials]
    assert all((lines[t.number].line.color == GREY) == (t.state == "pruned") for t in s.trials)
    assert len(lines[s.best.number].x) == 8   # every eval step of the best trial's curve
    dims = view.coords.data[0].dimensions
    assert [d["label"] for d in dims] == ["log10 lr", "test_acc"] and len(dims[1]["values"]) == 5
    back = load(s.path)
    assert SearchView(back).curves.data[0].x   # a reloaded search draws too
    assert [t.row() for t in back.trials] == [t.row() for t in s.trials]
    assert back.best.number == s.best.number and back.info["status"] == "finished"
    assert all((tmp_path / t.run_id / "config.json").exists() for t in back.trials)   # each trial is a run


def test_a_failing_trial_is_reported_and_the_search_goes_on(cluster, tmp_path):
    base = RunConfig(steps=300, eval_every=100, runs_dir=str(tmp_path)).replace(model="mlp")
    killed = []

    def kill_group_1(s):   # group 1's worker dies while its first trial trains
        if not killed and any(t.group == 1 and t.state == "running" for t in s.trials):
            killed.append(True)
            s.groups[1].kill_worker(0)

    s = Search.start(cluster, {"lr": [1e-2, 3e-3, 1e-3]}, base=base, on_update=kill_group_1)   # split already
    s.wait(timeout=300)
    assert killed
    failed = [t for t in s.trials if t.state == "failed"]
    assert len(failed) == 1 and failed[0].group == 1 and "died" in failed[0].error
    assert sum(t.state == "complete" for t in s.trials) == 2   # the others ran on group 0
    assert load(s.path).table()[failed[0].number]["error"] == failed[0].error


def test_cli_bad_input_is_one_line_and_exit_2(capsys):
    from lab import cli
    for args, knob in ((["--space", "nope=1"], "knob"), (["--space", "lr=1e-4:1e-1"], "lr"), ([], "space"),
                       (["--space", "lr=0.01", "--groups", "3"], "groups"), (["--space", "lr"], "space")):
        assert cli.main(["search", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {knob} must be") and err.count("\n") == 1, err
