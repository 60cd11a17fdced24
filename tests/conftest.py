"""Shared fixtures: isolated IPython/Jupyter dirs, a runs dir, and cluster factories that clean up."""
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_TMP = Path(tempfile.mkdtemp(prefix="lab-tests-"))
# Every cluster this suite starts lives under its own IPYTHONDIR, so the leftover check below
# can tell our processes from anybody else's, and nothing lands in $HOME.
os.environ.setdefault("IPYTHONDIR", str(_TMP / "ipython"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # `-n 2` (scripts/test.sh): each test process has its own clusters
    os.environ["IPYTHONDIR"] += "-" + os.environ["PYTEST_XDIST_WORKER"]
for var, sub in (("JUPYTER_CONFIG_DIR", "jconfig"), ("JUPYTER_DATA_DIR", "jdata"), ("JUPYTER_RUNTIME_DIR", "jruntime")):
    os.environ.setdefault(var, str(_TMP / sub))
os.environ.setdefault("LAB_QUICK", "1")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
# Comm's device-check mode (lab.comm) in every worker the suite starts: a tensor on the wrong plane or
# device fails here as NCCL would fail it on a GPU machine
os.environ.setdefault("LAB_DEVICE_CHECK", "1")

import torch  # noqa: E402

# In-process training in tests shares the 2 cores with the cluster's engines: one thread avoids
# oversubscription (seen 30x slower with torch's default on a loaded machine).
torch.set_num_threads(1)


def pytest_configure(config):
    """Chapters run under nbval are also rendered to test-artifacts/gallery/ at the end, from the
    outputs nbval already has (tests/gallery_plugin.py): the CI check of the gallery, no second run."""
    from gallery_plugin import GalleryPlugin
    config.pluginmanager.register(GalleryPlugin(ROOT / "test-artifacts" / "gallery"), "lab-gallery")
    config.addinivalue_line("markers", "hosts: makes hosts on real links (network namespaces; needs root)")


def pytest_terminal_summary(terminalreporter):
    """Say how many of the tests on real links ran: they need root, and are never silently skipped under CI."""
    counts = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for rep in terminalreporter.stats.get(outcome, []):
            if "hosts" in getattr(rep, "keywords", {}) and (rep.when == "call" or outcome in ("skipped", "error")):
                counts[outcome] = counts.get(outcome, 0) + 1
    if counts:
        terminalreporter.write_line("tests on real links between hosts (marker `hosts`): " +
                                    ", ".join(f"{n} {k}" for k, n in counts.items()))


@pytest.fixture
def runs_dir(tmp_path):
    return str(tmp_path / "runs")


@pytest.fixture(scope="module")
def cluster_factory():
    """Start clusters with `factory(workers)`; every one is stopped when the module ends."""
    from lab.cluster import Cluster
    started = []

    def factory(workers=2, **kw):
        kw.setdefault("cluster_id", f"test-{os.getpid()}-{len(started)}")
        kw.setdefault("reuse", False)
        c = Cluster.start(workers, **kw)
        started.append(c)
        return c

    yield factory
    for c in started:
        c.stop()


@pytest.fixture(scope="module")
def cluster2(cluster_factory):
    """A 2-worker CPU cluster shared by one test module."""
    return cluster_factory(2)


@pytest.fixture(scope="module")
def private_claims(tmp_path_factory):
    """The module's clusters say which cores they hold among themselves only (lab.affinity.Claims):
    what they pin does not depend on the clusters the suite's other process runs meanwhile. Use it as
    `pytestmark = pytest.mark.usefixtures("private_claims")`: marked fixtures come before a test's own,
    so before any cluster fixture."""
    from lab.cluster import Cluster
    saved, Cluster.claims_dir = Cluster.claims_dir, tmp_path_factory.mktemp("claims")
    yield Cluster.claims_dir
    Cluster.claims_dir = saved


def lab_processes():
    """ipyparallel controller / engine processes started under this suite's IPYTHONDIR (with `-n`,
    under this test process's; the controlling process, which runs no test, sees all of them)."""
    mine = os.environ["IPYTHONDIR"].encode()
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    left = []
    for line in out.splitlines()[1:]:
        pid, _, args = line.strip().partition(" ")
        if "ipyparallel" not in args and "ipengine" not in args and "ipcontroller" not in args:
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(v == b"IPYTHONDIR=" + mine or v.startswith(b"IPYTHONDIR=" + mine + b"-gw") for v in env):
            left.append(line)
    return left


def pytest_sessionfinish(session, exitstatus):
    """The suite must leave no ipyparallel process behind: a leftover fails the run."""
    import time
    deadline = time.time() + 15
    left = lab_processes()
    while left and time.time() < deadline:
        time.sleep(0.5)
        left = lab_processes()
    if left:
        print("\nLEFTOVER ipyparallel processes after the test session:\n" + "\n".join(left))
        session.exitstatus = 1
    import lab.hosts  # nor a network namespace made by this process (tests), or by a process that is gone
    from lab.pids import pid_alive   # (a chapter's kernel, a bench: their reaper removes theirs within seconds)

    def left_ns():
        out = []
        for ns in lab.hosts.namespaces():
            m = lab.hosts._NS_RE.match(ns)
            owner = int(m.group(1)) if m else None
            if owner == os.getpid() or (owner and not os.environ.get("PYTEST_XDIST_WORKER") and not pid_alive(owner)):
                out.append(ns)
        return out

    mine, deadline = left_ns(), time.time() + 15
    while mine and time.time() < deadline:
        time.sleep(0.5)
        mine = left_ns()
    if mine:
        print("\nLEFTOVER network namespaces after the test session: " + " ".join(mine))
        session.exitstatus = 1
