"""Each engine on its own share of the cores (lab.affinity): the plan, and the threads that follow it."""
import os
import time

import pytest

from lab import affinity, slices
from lab.errors import ConfigError
from lab.cluster import Cluster
from lab.config import RunConfig

HAS_AFFINITY = hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")

pytestmark = pytest.mark.usefixtures("private_claims")   # before any cluster: pins of our own (conftest)


def test_plan_gives_each_engine_an_equal_share_of_its_own_or_nothing():
    assert affinity.plan(1, [0, 1]) == [[0, 1]]
    assert affinity.plan(2, [3, 1, 0, 2]) == [[0, 1], [2, 3]]          # sorted, contiguous
    assert affinity.plan(3, range(8)) == [[0, 1], [2, 3], [4, 5]]       # 6, 7 stay free
    assert affinity.plan(2, [0, 1]) == [[0], [1]]
    assert affinity.plan(3, [0, 1]) is None and affinity.plan(8, [0, 1]) is None   # more engines than cores
    assert affinity.plan(8, [0, 1], share=True) == [[0], [1]] * 4                   # unless shared: round robin
    assert affinity.plan(3, [0, 1], share=True) is None                             # (not unevenly)
    assert affinity.plan(2, [0, 1, 2], share=True) == [[0], [1]]
    assert affinity.plan(2, []) is None and affinity.plan(0, [0]) is None
    for workers, cpus in ((2, range(5)), (4, range(16)), (3, range(3))):
        shares = affinity.plan(workers, cpus)
        assert len(shares) == workers and len({len(s) for s in shares}) == 1
        assert len({c for s in shares for c in s}) == sum(map(len, shares))   # disjoint


def _cores_by_thread(pid):
    out = {}
    for tid in slices.threads(pid):
        try:
            out[tid] = tuple(affinity.cores_of(tid))
        except TypeError:   # a thread that ended
            pass
    return out


@pytest.mark.skipif(not HAS_AFFINITY, reason="no CPU affinity on this system (the lab pins nothing there)")
def test_every_engine_thread_runs_on_its_share_and_later_threads_inherit_it(cluster2, runs_dir):
    cpus = affinity.cores_of()
    want = affinity.plan(2, cpus)
    assert [d["pinned"] for d in cluster2.infos] == want
    for pid, share in zip(cluster2.pids, want):
        assert set(_cores_by_thread(pid).values()) == {tuple(share)}   # gloo's threads too
    before = {pid: set(_cores_by_thread(pid)) for pid in cluster2.pids}
    run = cluster2.train(RunConfig(steps=100_000, runs_dir=runs_dir, name="pinned"))
    try:
        deadline, new = time.time() + 60, {}
        while time.time() < deadline and not all(new.get(p) for p in cluster2.pids):
            run.poll()
            new = {p: {c for t, c in _cores_by_thread(p).items() if t not in before[p]} for p in cluster2.pids}
            time.sleep(0.2)
        assert [new[p] for p in cluster2.pids] == [{tuple(s)} for s in want]   # the run's threads
    finally:
        run.stop()
        run.wait(timeout=120)
    # a parameter server's thread floats on every core while its worker's stay on their share
    run = cluster2.train(RunConfig(steps=100_000, runs_dir=runs_dir, name="server").replace(strategy="async"))
    try:
        deadline, got = time.time() + 60, [{}]
        while time.time() < deadline and not any(name.startswith("lab-ps") for name in got[0]):
            run.poll()
            got = cluster2.apply(affinity.by_thread)
            time.sleep(0.2)
        for rank, threads in enumerate(got):
            servers = {n: c for n, c in threads.items() if n.startswith("lab-ps")}
            assert list(servers.values()) == ([cpus] if rank == 0 else []), threads
            assert {tuple(c) for n, c in threads.items() if n not in servers} == {tuple(want[rank])}, threads
    finally:
        run.stop()
        run.wait(timeout=120)
    # asked again without pinning (the same cluster, reused): back on the cores they started with
    same = Cluster.start(2, cluster_id=cluster2.cluster_id, pin=False)
    with pytest.raises(ConfigError, match="pin"):
        same.pin_cores("always")
    try:
        assert same is cluster2 and [d["pinned"] for d in same.infos] == [None, None]
        for pid in same.pids:
            assert set(_cores_by_thread(pid).values()) == {tuple(cpus)}
    finally:
        Cluster.start(2, cluster_id=cluster2.cluster_id)   # pinned again, for the module's other tests
    assert [d["pinned"] for d in cluster2.infos] == want


def test_claims_count_live_clusters_only_and_a_stale_file_goes(tmp_path):
    import subprocess
    import sys
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claims = affinity.Claims(tmp_path / "affinity")
    with claims.locked():
        assert claims.held_by_others("a") == set()
        claims.hold("a/1", [1, 0], [os.getpid()])
        claims.hold("gone", [2], [dead.pid])
        assert claims.held_by_others("b") == {0, 1} and claims.held_by_others("a/1") == set()
        assert not (tmp_path / "affinity" / "gone.json").exists()   # its cluster is gone
        claims.hold("a/1", [], [os.getpid()])   # holding nothing is releasing
        assert claims.held_by_others("b") == set()


@pytest.mark.skipif(not HAS_AFFINITY, reason="no CPU affinity on this system (the lab pins nothing there)")
def test_a_second_cluster_pins_only_cores_no_live_cluster_holds(cluster2, cluster_factory):
    cpus = affinity.cores_of()
    if len(cpus) > 4:
        pytest.skip(f"cluster2 holds only part of {len(cpus)} cores: the second would pin the rest")
    Cluster.start(2, cluster_id=cluster2.cluster_id)    # pinned: it holds every core (or all but one)
    other = cluster_factory(2)
    assert [d["pinned"] for d in other.infos] == [None, None]
    assert [set(_cores_by_thread(pid).values()) for pid in other.pids] == [{tuple(cpus)}] * 2
    cluster2.pin_cores(False)   # lets go of its cores: the other may take them
    assert [d["pinned"] for d in other.pin_cores().infos] == affinity.plan(2, cpus)
    assert [d["pinned"] for d in cluster2.pin_cores(True).infos] == [None, None]
    other.stop()                # stopping frees them too
    assert [d["pinned"] for d in cluster2.pin_cores().infos] == affinity.plan(2, cpus)


@pytest.mark.skipif(not HAS_AFFINITY, reason="no CPU affinity on this system (the lab pins nothing there)")
def test_shared_cores_are_pinned_round_robin_where_the_default_leaves_them_alone(cluster2, cluster_factory):
    cpus = affinity.cores_of()
    if len(cpus) > 4:
        pytest.skip(f"starts twice as many workers as cores: {len(cpus)} cores are too many for a test")
    n = 2 * len(cpus)   # more workers than cores
    cluster2.pin_cores(False)   # (the module's other cluster holds no core meanwhile)
    c = cluster_factory(n, pin="share")
    want = affinity.plan(n, cpus, share=True)
    assert want is not None and [d["pinned"] for d in c.infos] == want
    assert [set(_cores_by_thread(pid).values()) for pid in c.pids] == [{tuple(s)} for s in want]
    Cluster.start(n, cluster_id=c.cluster_id)   # the default: more workers than cores, none
    assert [d["pinned"] for d in c.infos] == [None] * n
    assert [set(_cores_by_thread(pid).values()) for pid in c.pids] == [{tuple(cpus)}] * n
    cluster2.pin_cores(True)


def test_a_pin_mode_out_of_range_is_one_line_naming_the_knob():
    for start in (Cluster.start, Cluster.attach):
        with pytest.raises(ConfigError, match='pin.*True, False or "share"'):
            start(pin="yes")
