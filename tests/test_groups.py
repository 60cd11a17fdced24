"""Engine groups (lab.groups): a cluster split into groups that train side by side, each on its own
process group; one group's failure leaves the others running. One 4-engine cluster for the module."""
import time

import pytest

from lab.config import RunConfig
from lab.errors import ConfigError, WorkerError
from lab.groups import sizes_of
from lab.runs import load_run


@pytest.fixture(scope="module")
def cluster4(cluster_factory):
    return cluster_factory(4)


def test_group_sizes_and_bad_splits(cluster4):
    assert sizes_of(2, 4) == [2, 2] and sizes_of(3, 4) == [2, 1, 1] and sizes_of([1, 3], 4) == [1, 3]
    for bad in (5, 0, [3, 2], [2, 0], "two"):
        with pytest.raises(ConfigError, match="groups"):
            cluster4.split(bad)


def test_two_groups_train_at_once_and_both_finish(cluster4, runs_dir):
    a, b = cluster4.split(2)
    assert (a.workers, b.workers, a.ranks, b.ranks) == (2, 2, [0, 1], [2, 3])
    assert a.healthy() and b.healthy()
    with pytest.raises(ConfigError, match="split"):
        cluster4.train(RunConfig(steps=5, runs_dir=runs_dir))
    # sync (all-reduce) on one group, a parameter server (send / recv to group rank 0) on the other
    ra = a.train(RunConfig(steps=60, eval_every=20, runs_dir=runs_dir), strategy="sync", model="mlp")
    t0 = time.time()   # one group busy: the other's health check, and the cluster's, answer at once
    assert b.healthy() and cluster4.healthy() and time.time() - t0 < 4
    rb = b.train(RunConfig(steps=40, eval_every=20, runs_dir=runs_dir), strategy="ps", model="mlp")
    overlap = False
    while not (ra.done and rb.done):
        ra.poll(), rb.poll()
        overlap |= (0 < ra.step < 60) and (0 < rb.step < 40)
        time.sleep(0.05)
    assert ra.status == rb.status == "finished", (ra.meta.get("error"), rb.meta.get("error"))
    assert overlap, "the two runs never trained at the same time"
    for run in (ra, rb):   # each run's workers are ranks 0 and 1 of their group
        assert {r["rank"] for r in run.records} == {0, 1}
        assert run.final("test_acc") > 0.5


def test_a_dead_engine_fails_only_its_groups_run(cluster4, runs_dir):
    a, b = cluster4.split([2, 2])
    ra = a.train(RunConfig(steps=150, eval_every=50, runs_dir=runs_dir), model="mlp")
    rb = b.train(RunConfig(steps=100_000, runs_dir=runs_dir), model="mlp")
    while rb.step < 5:
        rb.poll()
        time.sleep(0.05)
    b.kill_worker(1)   # cluster rank 3
    with pytest.raises(WorkerError, match="worker 1 died"):
        rb.wait(timeout=30)
    ra.wait(timeout=120)   # the other group's run goes on to its end
    assert ra.status == "finished" and max(r["step"] for r in ra.records) == 149
    assert load_run(rb.path).meta["status"] == "failed"
    assert a.healthy() and not b.alive() and cluster4.dead_workers() == [3]
