"""Which cores each engine runs on: its own share of its host's cores (as MPI's `--bind-to core` or
torchrun's NUMA binding), so that a worker woken by a message finds its core where it left it.

Unpinned, the scheduler may put a worker's thread, woken by a message, on a core that another
worker is computing on, and then it waits until that worker's slice ends at a timer tick (every
4 ms at HZ=250). A collective is a chain of such wake-ups, so a small exchange that usually takes a
fraction of a ms now and then takes ms. Side by side on this project's 2-core machine (`sync` with
top-k 1% + EF, 2 workers, 300 steps, two runs each; `scripts/stall-probe.py --workers 2 --runs 2
[--no-pin]`): unpinned, the busiest rank's communication per step had a mean of 1.00 and 0.72 ms
(median 0.33 and 0.29, 90th percentile 3.38 and 2.74: one step in seven to ten took 3 ms or more);
pinned 0.38 and 0.39 ms (median 0.26 and 0.27, 90th percentile 0.33 and 0.35), and samples/s went
from 10,282 and 10,932 to 13,135 and 12,111.

`plan` splits a host's cores among its engines when each can have one or more of its own: equal
disjoint shares (cores left over stay free for the notebook and the controller). With more engines
than cores it pins nothing: their loads differ (rank 0 evaluates, and is the parameter server of
`ps` and `async`), and the scheduler's balancing does better than any fixed sharing of cores. In
`python -m lab bench scaling` with 4 and 8 workers pinned round robin on 2 cores, `async` and `ps`
lost 17 to 23% of their samples/s on loopback (the run on commit `edb89f0`, in git history).
`lab.cluster.Cluster` plans per host from the cores each engine was started with and re-plans when
workers come or go (`lab.membership`); where a launcher already bound the engines to different
cores (MPI, Slurm), it leaves them alone.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence


def plan(workers: int, cpus: Sequence[int]) -> Optional[List[List[int]]]:
    """Cores for each of `workers` engines sharing the cores `cpus`, by local rank; None: leave them
    unpinned (more engines than cores, or nothing to split).

        >>> plan(2, [0, 1, 2, 3, 4])
        [[0, 1], [2, 3]]
        >>> plan(4, [0, 1]) is None
        True
    """
    cpus = sorted(cpus)
    if not 1 <= workers <= len(cpus):
        return None
    k = len(cpus) // workers
    return [cpus[i * k:(i + 1) * k] for i in range(workers)]


def threads() -> List[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return []


def pin(cpus: Sequence[int]) -> int:
    """Every thread of this process onto `cpus` (threads started later inherit it from the thread
    that starts them). Returns how many threads took it (0 where the system has no affinity)."""
    if not hasattr(os, "sched_setaffinity"):
        return 0
    done = 0
    for tid in threads() or [0]:
        try:
            os.sched_setaffinity(tid, set(cpus))
            done += 1
        except OSError:   # a thread that just ended
            pass
    return done


def cores_of(tid: int = 0) -> Optional[List[int]]:
    """The cores thread `tid` (0: the calling one) may run on."""
    try:
        return sorted(os.sched_getaffinity(tid))
    except (AttributeError, OSError):
        return None
