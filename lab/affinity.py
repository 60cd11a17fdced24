"""Which cores each engine runs on: its own share of its host's cores (as MPI's `--bind-to core` or
torchrun's NUMA binding), so that a worker woken by a message finds its core where it left it.

Unpinned, the scheduler may put a worker's thread, woken by a message, on a core that another
worker is computing on, and then it waits until that worker's slice ends at a timer tick (every
4 ms at HZ=250). A collective is a chain of such wake-ups, so a small exchange that usually takes a
fraction of a ms now and then takes ms. Side by side on this project's 2-core machine, 2 workers,
300 steps, pinned and not in turn on one cluster (`scripts/stall-probe.py --workers 2 --pin on,off
--runs 6 [--variant sync]`): with top-k 1% + EF the busiest rank's communication per step had a
mean of 0.31 to 0.36 ms pinned against 0.74 to 1.00 unpinned (median 0.27 against 0.29 to 0.31;
90th percentile 0.33 to 0.36 against 2.52 to 3.57: unpinned, one step in ten or more took 3 ms or
more), and the run made 12,899 to 13,363 samples/s against 11,018 to 11,327; plain `sync`, 0.75
to 0.95 ms against 1.07 to 1.42, and 15,472 to 16,148 samples/s against 13,611 to 14,303.

`plan` splits a host's cores among its engines when each can have one or more of its own: equal
disjoint shares (cores left over stay free for the notebook and the controller). With more engines
than cores it pins nothing by default, since their loads may differ: rank 0 is the parameter
server of `ps` and `async`, and a fixed split cannot follow that the way the scheduler's balancing
does. `pin="share"` pins them round robin all the same, which suits equal loads: 4 workers on 2
cores, round robin and unpinned in turn on one cluster (`scripts/stall-probe.py --workers 4
--pin share,off --runs 4 --variant V`), `sync` made 14,194 and 13,973 samples/s against 10,683
and 10,360 unpinned, but `ps` 11,104 and 10,539 against 12,744 and 12,365 (`async`, whose server's
thread floats, `float_thread`, about even: 14,731 and 14,910 against 15,442 and 14,580).

`lab.cluster.Cluster` plans per host from the cores each engine was started with and re-plans when
workers come or go (`lab.membership`); where a launcher already bound the engines to different
cores (MPI, Slurm), it leaves them alone. On this machine it pins only cores that no other live
cluster holds (`Claims`): two notebooks' clusters, or the test suite's two processes, would
otherwise pin their engines onto the same cores, where none could move away from the other.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Set

from . import slices   # (its `threads`: this process's thread ids)


def check_mode(pin) -> None:
    """`pin` as `Cluster.start`, `attach` and `pin_cores` take it: True, False or "share"."""
    from .errors import check
    check(isinstance(pin, bool) or pin == "share", "pin", 'True, False or "share"', pin)


def plan(workers: int, cpus: Sequence[int], share: bool = False) -> Optional[List[List[int]]]:
    """Cores for each of `workers` engines sharing the cores `cpus`, by local rank; None: leave them
    unpinned (more engines than cores, unless `share`; or nothing to split). `share`: past the core
    count, one core each, round robin, when the engines are a multiple of the cores (else None: a
    fixed uneven split would slow one core's engines every step).

        >>> plan(2, [0, 1, 2, 3, 4])
        [[0, 1], [2, 3]]
        >>> plan(4, [0, 1]) is None
        True
        >>> plan(4, [0, 1], share=True)
        [[0], [1], [0], [1]]
    """
    cpus = sorted(cpus)
    c = len(cpus)
    if workers < 1 or c == 0:
        return None
    if workers <= c:
        k = c // workers
        return [cpus[i * k:(i + 1) * k] for i in range(workers)]
    if share and workers % c == 0:
        return [[cpus[i % c]] for i in range(workers)]
    return None


_STARTED_ON: Optional[List[int]] = None   # this process's cores before `pin` first moved it
_FLOATING: Set[int] = set()                  # threads that run on all of them, pinned or not (`float_thread`)


def started_on() -> Optional[List[int]]:
    """The cores this process started on (before the lab pinned it)."""
    return _STARTED_ON if _STARTED_ON is not None else cores_of()


def pin(cpus: Optional[Sequence[int]]) -> int:
    """Every thread of this process onto `cpus` (None: back to the cores it started on), but those
    that float (`float_thread`): threads started later inherit it from the thread that starts them.
    Returns how many threads took it (0 where the system has no affinity)."""
    global _STARTED_ON
    if not hasattr(os, "sched_setaffinity"):
        return 0
    if _STARTED_ON is None:
        _STARTED_ON = cores_of()
    everywhere = set(_STARTED_ON or ())
    target = set(cpus) if cpus is not None else everywhere
    done = 0
    for tid in slices.threads() or [0]:
        try:
            os.sched_setaffinity(tid, everywhere if tid in _FLOATING else target)
            done += 1
        except OSError:   # a thread that just ended
            pass
    return done


def float_thread() -> None:
    """The calling thread (and the threads it starts) on every core this process started on,
    however the process is pinned, now and after any re-planning: for a role that is no worker's
    compute, as the parameter server's (`lab.strategies.server`): its replies should not queue
    behind rank 0's compute (or a straggling rank 0's) when another core is free, as they would
    with the server's thread pinned to rank 0's core."""
    if not hasattr(os, "sched_setaffinity"):
        return
    tid = threading.get_native_id()
    _FLOATING.add(tid)
    try:
        os.sched_setaffinity(tid, set(started_on() or ()))
    except OSError:
        pass


def settle_thread() -> None:
    """The calling thread stops floating (it ends, or its role does): forgotten by `pin`."""
    _FLOATING.discard(threading.get_native_id())


def by_thread() -> dict:
    """This process's Python threads, by name, and the cores each may run on (what a cluster's
    `apply(lab.affinity.by_thread)` shows of its engines)."""
    return {t.name: cores_of(t.native_id) for t in threading.enumerate() if t.native_id is not None}


def cores_of(tid: int = 0) -> Optional[List[int]]:
    """The cores thread `tid` (0: the calling one) may run on."""
    try:
        return sorted(os.sched_getaffinity(tid))
    except (AttributeError, OSError):
        return None


CLAIMS_DIR = Path(tempfile.gettempdir()) / f"lab-affinity-{getattr(os, 'getuid', lambda: 0)()}"


class Claims:
    """The cores each live cluster on this machine pinned its engines to: one JSON file per cluster
    in `directory` (by default one per user and machine, whatever the IPython profile: cores are the
    machine's), with its engines' pids; a file whose engines are all gone is stale and goes. Hold
    the lock (`with claims.locked():`) from reading to holding, so that two clusters planning at
    once do not take the same cores."""

    def __init__(self, directory=None):
        self.dir = Path(directory or CLAIMS_DIR)

    def _file(self, cluster_id: str) -> Path:
        return self.dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", cluster_id) + ".json")

    @contextlib.contextmanager
    def locked(self):
        try:
            import fcntl
        except ImportError:   # no POSIX locks (and no affinity to pin either): nothing to guard
            yield self
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def held_by_others(self, cluster_id: str) -> Set[int]:
        """The cores other live clusters hold."""
        from .pids import pid_alive
        mine, out = self._file(cluster_id), set()
        for f in self.dir.glob("*.json") if self.dir.is_dir() else ():
            if f == mine:
                continue
            try:
                held = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if any(pid_alive(p) for p in held.get("pids", [])):
                out |= set(held.get("cores", []))
            else:
                f.unlink(missing_ok=True)   # its cluster is gone
        return out

    def hold(self, cluster_id: str, cores: Iterable[int], pids: Iterable[int]) -> None:
        """`cluster_id` holds `cores` (none: it holds nothing) while any of `pids` lives."""
        cores = sorted(set(cores))
        if not cores:
            return self.release(cluster_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self._file(cluster_id).with_suffix(".tmp")
        tmp.write_text(json.dumps({"cores": cores, "pids": sorted(pids)}))
        tmp.replace(self._file(cluster_id))

    def release(self, cluster_id: str) -> None:
        self._file(cluster_id).unlink(missing_ok=True)
