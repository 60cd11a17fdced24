"""Engine groups: the cluster's workers split into groups that train side by side.

`cluster.split(2)` (or sizes, `cluster.split([1, 3])`) returns one `Group` per group: a Cluster
of its own engines with its OWN torch.distributed process group, so `group.train(cfg)` runs a
whole run on those engines while the other groups run theirs. Inside a group the workers are
ranks 0..n-1 of that group (the Comm, the strategies, data shards and seeds all see the group's
rank and world), and a failed or stopped run, even a dead engine, touches no other group: each
group's run watches only its own engines.

How: every engine of the cluster calls `torch.distributed.new_group` for every group, in the
same order (torch asks all ranks to take part in creating each group), and keeps its own; the
worker's context (`lab.worker.context`) then hands runs that group. Key/value traffic of the
server strategies goes through the cluster's store (hosted by rank 0's engine) under keys named
by run id, so groups never read each other's keys; if rank 0's engine dies, the other groups'
`async` / `ssp` runs lose that store (their `sync`, `ps`, `local`, ... runs do not need it).

While split, train on the groups: the whole cluster trains again after `cluster.merge()`.
A dead engine breaks the cluster's own process group: `cluster.restart()`, then split again.
"""
from __future__ import annotations

import datetime
from typing import List, Optional, Sequence, Union

from .errors import ConfigError, WorkerError, check


# -- engine side ------------------------------------------------------------------------------
def join(groups: List[List[int]], timeout_s: float) -> dict:
    """Runs on every engine of the cluster at once: make every group's process group, keep this one's."""
    import torch.distributed as dist
    from lab import worker
    busy = [r.id for r in worker.RUNS.values() if r.thread is not None and r.thread.is_alive()]
    if busy:
        raise RuntimeError(f"run {busy[0]} is still going on this worker: stop it before splitting")
    me, mine = worker.STATE["rank"], None
    td = datetime.timedelta(seconds=timeout_s)
    for i, ranks in enumerate(groups):   # every rank, every group, the same order
        pg = dist.new_group(ranks, timeout=td)
        control = worker.make_groups(timeout_s, pg, ranks)  # its gloo control plane (lab.comm)
        if me in ranks:
            mine = {"index": i, "rank": ranks.index(me), "world": len(ranks), "pg": pg, "ranks": list(ranks),
                    "control": control}
    worker.STATE["group"], worker.STATE["split"] = mine, True
    return {"group": None if mine is None else mine["index"], "rank": None if mine is None else mine["rank"]}


def leave() -> None:
    """Runs on an engine: runs use the whole cluster's process group again."""
    from lab import worker
    worker.STATE.pop("group", None), worker.STATE.pop("split", None)


def health() -> bool:
    """A one-number all-reduce over this engine's group (lab.worker.health does it once split)."""
    from lab import worker
    return worker.STATE.get("group") is not None and worker.health()


# -- notebook side ----------------------------------------------------------------------------
def sizes_of(groups: Union[int, Sequence[int]], workers: int) -> List[int]:
    """Group sizes: `k` groups as equal as possible (larger first), or the sizes given (sum <= workers)."""
    if isinstance(groups, int) and not isinstance(groups, bool):
        check(1 <= groups <= workers, "groups", f"an integer in [1, {workers}] (the cluster has {workers} workers)",
              groups)
        q, r = divmod(workers, groups)
        return [q + (i < r) for i in range(groups)]
    ok = isinstance(groups, (list, tuple)) and len(groups) >= 1 and \
        all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in groups)
    check(ok, "groups", "a number of groups or a list of group sizes >= 1", groups)
    check(sum(groups) <= workers, "groups", f"sizes adding up to at most {workers} (the cluster's workers)",
          list(groups))
    return list(groups)


class Group:
    """Some of a cluster's workers with their own process group (made by `Cluster.split`).

    Use it like a cluster: `group.train(cfg)`, `group.apply(fn)`, `group.kill_worker(0)`. The
    parent cluster owns the engines: `stop()` here only lets go of the group. (A group is an
    instance of `Group` and of its cluster's class: `split` joins the two, see `_group_class`.)
    """

    def __init__(self, parent: Cluster, index: int, ranks: List[int]):
        super().__init__(parent.client, parent.ipp, [parent.engine_ids[r] for r in ranks],
                         [parent.infos[r] for r in ranks], cluster_id=f"{parent.cluster_id}/g{index}",
                         timeout_s=parent.timeout_s)
        self.parent, self.index, self.ranks = parent, index, list(ranks)
        self.net = parent.net
        if parent.net is not None:
            self._rank_host = [parent._rank_host[r] for r in ranks]

    def healthy(self, timeout: float = 5.0) -> bool:
        try:
            ars = [self.client[e].apply_async(health) for e in self.engine_ids]
            return all(ar.get(timeout=timeout) for ar in ars)
        except Exception:
            return False

    def split(self, groups):
        raise ConfigError("groups", "a split of the whole cluster (groups are not split further)", groups)

    def merge(self):
        raise ConfigError("cluster", "the split cluster (call merge on it, not on one of its groups)", repr(self))

    def stop(self, wait_s: float = 3.0) -> None:
        """Let go of the group (the parent cluster stops the engines)."""

    def restart(self):
        raise WorkerError(f"group {self.index} cannot restart alone: restart the cluster "
                          f"(`cluster.restart()`), then split it again")

    def __repr__(self):
        state = "running" if self.alive() else "a worker died"
        return (f"<Group {self.index} of {self.parent.cluster_id or '(attached)'}: {self.workers} workers "
                f"(cluster ranks {self.ranks[0]}-{self.ranks[-1]}), {state}>")


_CLASSES: dict = {}


def _group_class(base: type) -> type:
    """`Group` on top of the cluster's own class (so a group is a cluster in every other respect)."""
    if base not in _CLASSES:
        _CLASSES[base] = type("Group", (Group, base), {"__module__": __name__, "__doc__": Group.__doc__})
    return _CLASSES[base]


def split(cluster: Cluster, groups: Union[int, Sequence[int]]) -> List[Group]:
    """Split `cluster`'s workers into groups (consecutive ranks), each with its own process group.

    Args:
        groups: how many groups (as equal as possible) or their sizes, e.g. 2 or [1, 3].
    Returns:
        one `Group` per group; `cluster.groups` holds them until `merge(cluster)`.
    """
    if isinstance(cluster, Group):
        cluster.split(groups)
    sizes = sizes_of(groups, cluster.workers)
    dead = cluster.dead_workers()
    if dead:
        raise WorkerError(f"worker {dead[0]} of the cluster is dead: call cluster.restart(), then split")
    ranks, start = [], 0
    for s in sizes:
        ranks.append(list(range(start, start + s)))
        start += s
    ars = [cluster.client[e].apply_async(join, ranks, cluster.timeout_s) for e in cluster.engine_ids]
    for r, ar in enumerate(ars):
        try:
            ar.get(timeout=cluster.timeout_s * 2)
        except Exception as e:
            raise WorkerError(f"worker {r} could not join its group: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}") from None
    cluster.groups = [_group_class(type(cluster))(cluster, i, rs) for i, rs in enumerate(ranks)]
    return cluster.groups


def merge(cluster: Cluster) -> Cluster:
    """Undo `split`: runs on `cluster` use all its workers again (the groups must be idle)."""
    for e in cluster.engine_ids:
        cluster.client[e].apply_async(leave).get(timeout=cluster.timeout_s)
    cluster.groups = []
    return cluster


def of(cluster: Cluster) -> Optional[List[Group]]:
    """The groups `cluster` is split into, or None."""
    return getattr(cluster, "groups", None) or None
