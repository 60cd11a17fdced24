"""Elastic runs (lab.elastic): a worker dies, the others re-form the group and carry on."""
import os
import time

import pytest
import torch

from conftest import lab_processes
from lab import affinity
from lab.cluster import Cluster
from lab.config import RunConfig
from lab.errors import ConfigError, WorkerError
from lab.runs import load_run

pytestmark = pytest.mark.usefixtures("private_claims")   # before any cluster: pins of our own (conftest)


def _start(tag: str, workers: int = 3) -> Cluster:
    return Cluster.start(workers, cluster_id=f"h16-{tag}-{os.getpid()}", reuse=False)


def _kill_at(run, cluster, rank: int, step: int, timeout: float = 60) -> int:
    """Poll until worker `rank` passed `step`, then kill its engine; returns the step it was near."""
    deadline = time.time() + timeout
    while run.step < step:
        assert time.time() < deadline, f"run stuck at step {run.step}"
        run.poll()
        time.sleep(0.05)
    near = run.step
    cluster.kill_worker(rank)
    return near


def _replicas_agree(cluster, run_id) -> float:
    states = [cluster.call(r, "model_state", run_id, timeout=30) for r in range(cluster.workers)]
    return max((s[k].double() - states[0][k].double()).abs().max().item() for s in states[1:] for k in s)


LOCKSTEP = {"sync", "local", "ps"}   # survivors go back to a common step; async/ssp each go on from its own


@pytest.mark.parametrize("strategy,extra,kill", [("sync", {}, 2), ("local", {"strategy.period": 4}, 2),
                                                 ("ps", {}, 0),     # the server's engine dies: its standby takes over
                                                 ("async", {}, 0), ("ssp", {}, 1)])   # the server dies / survives
def test_a_dead_worker_leaves_the_others_training(runs_dir, strategy, extra, kill):
    cluster = _start(strategy)
    alive = [w for w in range(3) if w != kill]
    try:
        cfg = RunConfig(steps=120, eval_every=40, runs_dir=runs_dir, elastic=True, min_workers=2).replace(
            **{"strategy.name": strategy, **extra})
        run = cluster.train(cfg)
        near = _kill_at(run, cluster, kill, 15)
        t0 = time.time()
        run.wait(timeout=120)
        assert run.status == "finished", run.meta.get("error")
        assert cluster.workers == 2                      # the cluster is its survivors now
        assert _replicas_agree(cluster, run.id) == 0.0   # identical replicas after the re-form
        saved = load_run(run.path)
        by = saved.by_rank()
        for w in alive:                                  # every step of the survivors is recorded
            assert sorted({r["step"] for r in by[w]}) == list(range(120)), w
        dead = sorted(r["step"] for r in by[kill])       # the dead worker's fetched steps: no gap
        assert dead == list(range(len(dead))) and len(dead) >= near - 5
        (change,) = saved.summary()["membership"]
        assert change["left"] == [kill] and change["workers"] == 2 and change["gen"] == 1
        # at most: sync, ps: one survivor finished one more step; local H=4: one survivor's averaging
        # completed (its ring's last message came) and the other's failed, so they go back to the
        # one before, and the first had run H-1 local steps past it: 2H-1
        assert change["steps_lost"] is not None and change["steps_lost"] <= {"sync": 1, "ps": 1, "local": 7}.get(strategy, 0)
        assert change["recovery_s"] < 5
        marked = [r for r in saved.records if r.get("membership")]
        assert sorted(r["rank"] for r in marked) == alive   # one mark per survivor
        if strategy in LOCKSTEP:
            assert all(r["step"] == change["step"] for r in marked)
        if strategy in ("ps", "async", "ssp"):   # what became of the server's state is said
            assert change["server"] == ("kept" if kill else "moved")
        steps = {int(v["step"]) for v in cluster.call(0, "optimizer_state", run.id)["state"].values()}
        if strategy == "ps":   # the standby carried the server's Adam state across: every step counted once
            assert steps and min(steps) >= 120 - change["steps_lost"], steps
        if strategy == "async":   # Adam counts every update the server applied: the standby's copy carried
            # the count across (restarted, it would count only the ~210 after the death), losing at most
            # the updates applied after rank 1's last read
            assert steps and min(steps) >= len(saved.records) - 8, (steps, len(saved.records))
        # the state handed over after the change is on the wire: the survivors' marked records carry
        # the parameters' bytes on top of what a step of theirs moves
        param_bytes = 4 * sum(v.numel() for v in cluster.call(0, "model_state", run.id).values())
        for r in marked:
            usual = sorted(x["bytes_sent"] + x["bytes_recv"] for x in by[r["rank"]] if not x.get("membership"))
            assert r["bytes_sent"] + r["bytes_recv"] - usual[len(usual) // 2] >= param_bytes, (r, usual[len(usual) // 2])
        from lab.compare import change_points
        assert change_points(saved.records) and change_points(saved.records)[0][1]["workers"] == 2
        assert time.time() - t0 < 60
        # the re-formed cluster trains an ordinary run of the same strategy next (the store a server's
        # workers signal through outlived the dead worker, even worker 0, who hosted the first one)
        again = cluster.train(RunConfig(steps=5, runs_dir=runs_dir).replace(**{"strategy.name": strategy, **extra}))
        again.wait(timeout=60)
        assert again.status == "finished" and {r["rank"] for r in again.records} == {0, 1}, again.meta.get("error")
    finally:
        cluster.stop()


def test_a_death_during_the_last_drain_is_survived(runs_dir):
    """async: the fast workers finished and wait in the server's final drain when the straggler dies."""
    cluster = _start("drain")
    try:
        cfg = RunConfig(steps=120, eval_every=60, runs_dir=runs_dir, elastic=True, min_workers=2,
                        slowdown=[1, 1, 10]).replace(**{"strategy.name": "async"})
        run = cluster.train(cfg)
        run.wait(until=lambda r: all(r._steps[w] >= 119 for w in (0, 1)), timeout=120)
        assert run.by_rank().get(2) and max(x["step"] for x in run.by_rank()[2]) < 100   # the straggler is behind
        cluster.kill_worker(2)
        t0 = time.time()
        run.wait(timeout=60)
        assert run.status == "finished", run.meta.get("error")
        assert time.time() - t0 < 10 and cluster.workers == 2
        (change,) = run.summary()["membership"]
        assert change["left"] == [2] and change["workers"] == 2
        assert _replicas_agree(cluster, run.id) == 0.0
    finally:
        cluster.stop()


# async: worker 0 (the server's host) did all its steps while the straggler trains on; it stays in
# the group (Guard.hold), so a newcomer still joins: each member re-forms at its own next step, and
# the newcomer starts at the straggler's. ssp: a join mid-run, at one step for all (its bound makes
# a worker wait inside a step for the straggler, which must not be re-forming then).
@pytest.mark.parametrize("strategy,worker0_at", [("async", 149), ("ssp", 10)])
def test_a_newcomer_joins_workers_at_different_steps(runs_dir, strategy, worker0_at):
    cluster = _start(f"join-{strategy}", workers=2)
    try:
        steps = 150
        cfg = RunConfig(steps=steps, eval_every=75, runs_dir=runs_dir, elastic=True,
                        slowdown=[1, 12]).replace(**{"strategy.name": strategy})
        run = cluster.train(cfg)
        run.wait(until=lambda r: r._steps[0] >= worker0_at, timeout=120)
        behind = max(x["step"] for x in run.by_rank()[1])
        assert behind < steps - 20, behind      # the straggler has a long way to go
        assert cluster.add_workers(1, run) == [2]
        run.wait(timeout=120)
        assert run.status == "finished", run.meta.get("error")
        assert cluster.workers == 3
        (change,) = run.summary()["membership"]
        assert change["joined"] == [2] and change["workers"] == 3
        by = run.by_rank()
        first = min(x["step"] for x in by[2])
        # the newcomer starts at the straggler's step then (the members' earliest), not rank 0's end
        assert behind <= first < steps - 1, (behind, first)
        assert sorted(x["step"] for x in by[2]) == list(range(first, steps))
        assert sorted({x["step"] for x in by[1]}) == list(range(steps))   # nothing lost
        assert _replicas_agree(cluster, run.id) == 0.0
    finally:
        cluster.stop()


def test_two_deaths_in_a_row_cost_seconds_not_a_timeout(runs_dir):
    """A second worker dies while the first re-form may still be going on: the run goes on with 2."""
    cluster = _start("two", workers=4)
    try:
        run = cluster.train(RunConfig(steps=150, eval_every=50, runs_dir=runs_dir, elastic=True, min_workers=2))
        _kill_at(run, cluster, 3, 15)
        t0 = time.time()
        cluster.kill_worker(2)
        run.wait(timeout=120)
        assert run.status == "finished", run.meta.get("error")
        assert time.time() - t0 < 20   # the group's timeout is 30 s: never waited out
        changes = run.summary()["membership"]
        assert sorted(w for c in changes for w in c["left"]) == [2, 3] and changes[-1]["workers"] == 2
        assert all(c["steps_lost"] is not None for c in changes)
        assert _replicas_agree(cluster, run.id) == 0.0
    finally:
        cluster.stop()


def test_a_generation_that_cannot_form_gives_way_to_the_next():
    """Members wait for each other before forming a group; the next generation ends the wait at once."""
    import threading
    from types import SimpleNamespace
    import torch.distributed as dist
    import lab.worker  # noqa: F401  (binds lab.elastic's engine side)
    from lab.elastic import Guard, Regroup
    store = dist.HashStore()
    ctx = SimpleNamespace(world=3, run_id="r", aborted=lambda: None)
    guard = Guard(SimpleNamespace(ctx=ctx, start_step=0), {"worker": 0, "store": store, "notified": 0})
    threading.Timer(0.3, store.set, ("r/gen2", "{}")).start()   # worker 2 died before it arrived
    t0 = time.time()
    with pytest.raises(Regroup, match="generation 2 published while generation 1 formed"):
        guard._arrive({"gen": 1, "members": [0, 1, 2]})
    assert 0.25 < time.time() - t0 < 2 and store.check(["r/gen1/arrived/0"])
    store.set("r/gen3/arrived/1", "1")   # with everyone there it returns at once
    guard._arrive({"gen": 3, "members": [0, 1]})


def test_a_member_that_never_arrives_is_named_with_where_it_was():
    """The arrival wait's timeout says, per missing worker, how far its recovery got (from the store)."""
    from types import SimpleNamespace
    import torch.distributed as dist
    import lab.worker  # noqa: F401  (binds lab.elastic's engine side)
    from lab.elastic import _W, Guard
    store = dist.HashStore()
    ctx = SimpleNamespace(world=3, run_id="r", aborted=lambda: None)
    guards = [Guard(SimpleNamespace(ctx=ctx, start_step=0), {"worker": w, "store": store, "notified": 0})
              for w in range(2)]
    guards[1]._phase("left its group")
    before = _W["STATE"].get("timeout_s")
    _W["STATE"]["timeout_s"] = 0.3
    try:
        with pytest.raises(WorkerError, match=r"worker\(s\) \[1, 2\] did not arrive for generation 1 within 0 s "
                                              r"\(worker 1 last said 'left its group' 0\.\d s ago; "
                                              r"worker 2 never began to recover"):
            guards[0]._arrive({"gen": 1, "members": [0, 1, 2]})
    finally:
        _W["STATE"]["timeout_s"] = before if before is not None else 30.0


def test_below_min_workers_is_the_clear_error_within_seconds(runs_dir):
    cluster = _start("min")
    try:
        run = cluster.train(RunConfig(steps=100_000, runs_dir=runs_dir, elastic=True, min_workers=3))
        _kill_at(run, cluster, 1, 5)
        t0 = time.time()
        with pytest.raises(WorkerError, match="worker 1 died.*min_workers=3"):
            run.wait(timeout=30)
        assert time.time() - t0 < 10
        assert load_run(run.path).meta["status"] == "failed"
    finally:
        cluster.stop()
    pids = [p for p in cluster._procs if p.is_running() and p.status() != "zombie"]
    assert not pids and not lab_processes() or not [p for p in lab_processes() if "h16-min" in p]


def test_elastic_knobs_are_checked_in_one_line():
    with pytest.raises(ConfigError, match="^elastic must be off for strategy gossip"):
        RunConfig(elastic=True).replace(**{"strategy.name": "gossip"}).validate()
    with pytest.raises(ConfigError, match=r"^min_workers must be an integer in \[1, 2\]"):
        RunConfig(elastic=True, min_workers=3).validate(workers=2)
    with pytest.raises(ConfigError, match="^min_workers must be"):
        RunConfig(min_workers=0).validate()


def test_the_ps_standby_mirrors_the_server_bit_for_bit(runs_dir):
    """Under an elastic ps, rank 1 applies the server's step itself: parameters and Adam state equal the server's."""
    cluster = _start("standby")
    try:
        run = cluster.train(RunConfig(steps=100_000, runs_dir=runs_dir, elastic=True).replace(**{"strategy.name": "ps"}))
        deadline = time.time() + 60
        while run.step < 15:
            assert time.time() < deadline
            run.poll()
            time.sleep(0.05)
        at = run.pause()   # every worker waits at step `at`'s boundary once it recorded step at-1
        while len({r["rank"] for r in run.records if r["step"] == at - 1}) < 3:
            assert time.time() < deadline
            run.poll()
            time.sleep(0.05)
        opt = [cluster.call(r, "optimizer_state", run.id) for r in range(3)]
        assert _replicas_agree(cluster, run.id) == 0.0   # the standby computed what the others were sent
        server, standby, worker = (o["state"] for o in opt)
        assert server and standby.keys() == server.keys() and not worker   # only the two hold Adam's state
        for k in server:
            for name, v in server[k].items():
                assert torch.equal(standby[k][name], v), (k, name)
        assert int(server[0]["step"]) == at
        run.stop()
        run.wait(timeout=60)
    finally:
        cluster.stop()


def _gone(procs) -> bool:
    return all(not p.is_running() or p.status() == "zombie" for p in procs)


def test_a_newcomer_joins_a_running_run_with_the_others_state(runs_dir):
    cluster = _start("join", workers=2)
    try:
        run = cluster.train(RunConfig(steps=100_000, runs_dir=runs_dir, elastic=True))
        deadline = time.time() + 60
        while run.step < 10:
            assert time.time() < deadline
            run.poll()
            time.sleep(0.05)
        assert cluster.add_workers(1, run) == [2]
        while len([r for r in run.records if r["rank"] == 2]) < 10:   # the newcomer trains too
            assert time.time() < deadline + 60, run._steps
            run.poll()
            time.sleep(0.05)
        run.stop()
        run.wait(timeout=60)
        assert run.status == "stopped" and cluster.workers == 3
        marks = [r for r in run.records if r.get("membership")]
        assert {r["rank"] for r in marks} == {0, 1, 2} and len({r["step"] for r in marks}) == 1
        # at its first step the newcomer holds exactly the others' parameters
        assert len({r["membership"]["checksum"] for r in marks}) == 1
        assert min(r["step"] for r in run.records if r["rank"] == 2) == marks[0]["step"]
        assert _replicas_agree(cluster, run.id) == 0.0
        (change,) = run.summary()["membership"]
        assert change["joined"] == [2] and change["workers"] == 3 and change["steps_lost"] == 0
        # the cores are planned for the workers there are now (lab.affinity: 3 or 4 on 2 cores, none)
        assert _cores(cluster) == (affinity.plan(3, affinity.cores_of()) or [affinity.cores_of()] * 3)
        # outside a run, a newcomer joins the cluster's group at once
        assert cluster.add_workers(1) == [3]
        assert _cores(cluster) == (affinity.plan(4, affinity.cores_of()) or [affinity.cores_of()] * 4)
        again = cluster.train(RunConfig(steps=5, runs_dir=runs_dir)).wait(timeout=60)
        assert {r["rank"] for r in again.records} == {0, 1, 2, 3}
    finally:
        cluster.stop()
    assert _gone(cluster._procs)   # the newcomers' engines too


def _cores(cluster):
    """The cores each worker's engine runs on (its main thread's), by rank."""
    return [affinity.cores_of(pid) for pid in cluster.pids]


def test_a_crashed_notebook_leaves_nothing_running_after_a_join():
    """The kernel dies mid elastic run after a worker joined: every engine, the newcomer's too, goes."""
    import subprocess
    import sys
    from lab.pids import pid_alive
    code = ("import os, time; from lab.cluster import Cluster; from lab.config import RunConfig\n"
            f"c = Cluster.start(2, cluster_id='h16-crash-{os.getpid()}', grace_s=4, reuse=False)\n"
            "run = c.train(RunConfig(steps=100000, elastic=True, runs_dir=os.environ['RUNS']))\n"
            "while run.step < 5: run.poll(); time.sleep(0.05)\n"
            "c.add_workers(1, run)\n"
            "print(*c.pids, c.ipp.controller.pid, flush=True)\n"
            "os._exit(9)\n")
    import tempfile
    env = dict(os.environ, RUNS=tempfile.mkdtemp(prefix="h16-runs-"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    pids = [int(x) for x in out.stdout.split()]
    assert len(pids) == 4, out.stderr[-2000:]
    deadline = time.time() + 30
    while time.time() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.5)
    assert not any(pid_alive(p) for p in pids), "engines or controller outlived the crashed kernel"
