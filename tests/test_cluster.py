"""The cluster on real engines: start, reuse, reconnect, attach, loopback only, nothing left behind."""
import os
import subprocess
import sys
import threading
import time

import psutil
import pytest

from lab.cluster import Cluster
from lab.pids import pid_alive
from lab.config import RunConfig


def _family_pids(cluster):
    """The engines, their nannies and the controller of a local cluster."""
    pids = set(cluster.pids)
    for p in list(pids):
        try:
            pids.add(psutil.Process(p).ppid())
        except psutil.NoSuchProcess:
            pass
    ctl = getattr(cluster.ipp.controller, "pid", None) if cluster.ipp else None
    if ctl:
        pids.add(ctl)
    return {p for p in pids if p > 1 and p != os.getpid()}


def test_start_gives_ranks_threads_and_process_group(cluster_factory):
    c = cluster_factory(2, cluster_id="t-start")
    assert [d["rank"] for d in c.infos] == [0, 1]
    assert all(d["world"] == 2 and d["backend"] == "gloo" and d["device"] == "cpu" for d in c.infos)
    assert all(d["threads"] == max(1, os.cpu_count() // 2) for d in c.infos)
    assert "2 workers on cpu, gloo, running" in repr(c)
    # re-running the start cell reuses the cluster instead of starting another
    again = Cluster.start(2, cluster_id="t-start")
    assert again is c
    # a different size replaces it cleanly
    old = _family_pids(c)
    bigger = Cluster.start(3, cluster_id="t-start")
    assert bigger is not c and bigger.workers == 3
    time.sleep(1)
    assert not any(pid_alive(p) for p in old)
    bigger.stop()


def test_everything_listens_on_loopback_only(cluster2):
    pids = _family_pids(cluster2)
    listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert listening, "expected the controller, engines and gloo to listen somewhere"
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}, listening


def test_engines_share_the_starting_session_in_process_groups_of_their_own(cluster2):
    """One session (one autogroup: Linux schedules it as one group, lab.launchers), yet a terminal's
    Ctrl-C (sent to our process group) does not reach the engines."""
    assert len(cluster2.pids) == 2
    for pid in cluster2.pids:
        assert os.getsid(pid) == os.getsid(0), "an engine started a session of its own"
        assert os.getpgid(pid) != os.getpgid(0), "an engine is in the starter's process group"


def test_every_engine_thread_asks_for_a_short_slice_and_later_threads_inherit_it(cluster2, runs_dir):
    """lab.slices: a message's wake-up preempts compute. Every thread of an engine, gloo's too, and
    the threads a run starts afterwards."""
    from lab import slices
    if slices.get_slice_us(threading.get_native_id()) is None:
        pytest.skip("no sched_getattr on this system (the lab asks for nothing there)")
    before = {}
    for pid in cluster2.pids:
        before[pid] = set(slices.threads(pid))
        got = {tid: slices.get_slice_us(tid) for tid in before[pid]}
        assert set(got.values()) == {slices.SLICE_US}, got
    run = cluster2.train(RunConfig(steps=100_000, runs_dir=runs_dir, name="slices"))
    try:
        new, deadline = {}, time.time() + 60
        while time.time() < deadline and not all(new.get(p) for p in cluster2.pids):
            run.poll()
            new = {p: {t: slices.get_slice_us(t) for t in set(slices.threads(p)) - before[p]} for p in cluster2.pids}
            time.sleep(0.2)
        assert all(new.values()), "the run started no thread on some engine"
        for pid, got in new.items():   # (a thread that ended meanwhile reads None)
            assert set(got.values()) - {None} == {slices.SLICE_US}, (pid, got)
    finally:
        run.stop()
        run.wait(timeout=120)


def test_a_slice_out_of_range_is_one_line_naming_the_knob():
    from lab import slices
    from lab.errors import ConfigError
    with pytest.raises(ConfigError, match="slice_us.*100 to 100000"):
        slices.set_slice(50)


def test_stop_leaves_no_process(cluster_factory):
    c = cluster_factory(2, cluster_id="t-stop")
    pids = _family_pids(c)
    assert len(pids) >= 3
    c.stop()
    deadline = time.time() + 10
    while time.time() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.2)
    assert not any(pid_alive(p) for p in pids)


def _python(code, timeout=120):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=os.environ)


def test_restarted_kernel_reconnects_to_the_running_cluster(cluster_factory, runs_dir):
    c = cluster_factory(2, cluster_id="t-reconnect")
    code = (f"from lab.cluster import Cluster; from lab.config import RunConfig\n"
            f"c = Cluster.start(2, cluster_id='t-reconnect')\n"
            f"print(sorted(c.pids))\n"
            f"r = c.train(RunConfig(steps=20, runs_dir={runs_dir!r})).wait(timeout=60)\n"
            f"print(r.summary()['steps'])\n")
    out = _python(code)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0] == str(sorted(c.pids)) and lines[-1] == "20"  # the same engines, and they still train


def test_attach_to_a_cluster_started_with_ipcluster(tmp_path, runs_dir):
    prof = tmp_path / "profile_ext"
    ipcluster = os.path.join(os.path.dirname(sys.executable), "ipcluster")
    subprocess.run([ipcluster, "start", "-n", "2", f"--profile-dir={prof}", "--cluster-id=ext", "--daemonize",
                    "--HeartMonitor.period=500", "--IPController.ip=127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    try:
        c = Cluster.attach(profile_dir=str(prof), cluster_id="ext", workers=2)
        assert c.workers == 2 and [d["rank"] for d in c.infos] == [0, 1]
        run = c.train(RunConfig(steps=30, runs_dir=runs_dir)).wait(timeout=120)
        assert run.summary()["steps"] == 30
        c.stop()  # lets go; the cluster's owner stops it
        assert all(pid_alive(p) for p in c.pids)
    finally:
        subprocess.run([ipcluster, "stop", f"--profile-dir={prof}", "--cluster-id=ext"], capture_output=True, timeout=60)
    deadline = time.time() + 15
    while time.time() < deadline and any(pid_alive(p) for p in c.pids):
        time.sleep(0.2)
    assert not any(pid_alive(p) for p in c.pids)


def test_crashed_notebook_leaves_nothing_running():
    """A kernel that dies without stopping its cluster: the engines go within the grace period."""
    code = ("import os; from lab.cluster import Cluster\n"
            "c = Cluster.start(2, cluster_id='t-crash', grace_s=4, reuse=False)\n"
            "print(*c.pids, c.ipp.controller.pid, flush=True)\n"
            "os._exit(9)\n")
    out = _python(code)
    pids = [int(x) for x in out.stdout.split()]
    assert len(pids) == 3, out.stderr[-2000:]
    deadline = time.time() + 30
    while time.time() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.5)
    assert not any(pid_alive(p) for p in pids), "engines or controller outlived the crashed kernel"
