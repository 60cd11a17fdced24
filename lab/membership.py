"""Elastic runs, the notebook's side: the store it hosts, each run's membership, adding workers.

`lab.elastic` says how a run survives a death and how newcomers join; this module is what the
notebook (or the command line) does for it: host the rendezvous store (`Rendezvous`, on the
cluster's address only, so it outlives any worker), publish each new generation when a worker
died (`Membership.lost`, from `lab.runs.Run.poll`) or joins (`Membership.grow`), keep the run's
and the cluster's per-rank bookkeeping in step, and start engines for `Cluster.add_workers`.
"""
from __future__ import annotations

import datetime
import json
import socket
import time
from typing import List

from .elastic import add_peers, engine_host, enter, notify, prepare, rejoin
from .errors import WorkerError, check
from .remote import call
from .strategies import STRATEGIES
from .worker import local_addr


class Rendezvous:
    """A key/value store (torch TCPStore) hosted by the notebook's process, on the cluster's address only."""

    def __init__(self, host: str, timeout_s: float):
        import torch.distributed as dist
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))   # TCPStore would otherwise listen on every interface
        sock.listen(128)
        self.host, self.port = host, sock.getsockname()[1]
        # the store owns the socket from here (it closes it when it goes): no double close at exit
        self.store = dist.TCPStore(host, self.port, is_master=True, wait_for_workers=False, use_libuv=False,
                                   master_listen_fd=sock.detach(), timeout=datetime.timedelta(seconds=timeout_s))

    def set(self, key: str, value) -> None:
        self.store.set(key, json.dumps(value))

    def close(self) -> None:
        self.store = None


def rendezvous(cluster) -> Rendezvous:
    """The cluster's notebook-hosted store (made on first use, closed by `Cluster.stop`)."""
    rdzv = getattr(cluster, "_rendezvous", None)
    if rdzv is None:
        if cluster.net is not None:
            host = cluster.net.bridge_addr   # the notebook's own address on the hosts' bridge
        else:
            host = cluster.client[cluster.engine_ids[0]].apply_async(engine_host).get(timeout=cluster.timeout_s)
        try:
            rdzv = Rendezvous(host, cluster.timeout_s)
        except OSError:  # an attached cluster elsewhere: the address this machine reaches it from
            rdzv = Rendezvous(local_addr(host), cluster.timeout_s)
        cluster._rendezvous = rdzv
    return rdzv


class Membership:
    """One elastic run's workers as the notebook sees them (`run._elastic`)."""

    def __init__(self, run):
        self.run, self.gen = run, 0
        self.ids: List[int] = list(range(run.cluster.workers))   # worker id by current rank
        self.next_id = len(self.ids)                               # a newcomer's id
        self.rdzv = rendezvous(run.cluster)
        run.subscribe(self._on_records)

    @classmethod
    def start(cls, run) -> "Membership":
        """Connect every engine to the store for this run (before its training threads start)."""
        from .groups import of
        c = run.cluster
        check(of(c) is None and not hasattr(c, "parent"), "elastic",
              "off on a split cluster or its groups (an elastic run re-forms the whole cluster's group)", True)
        self = cls(run)
        ars = [c.client[e].apply_async(enter, run.id, self.rdzv.host, self.rdzv.port, r, c.timeout_s, c.pids)
               for r, e in enumerate(c.engine_ids)]
        for ar in ars:
            ar.get(timeout=c.timeout_s)
        return self

    def lost(self, dead: List[int]) -> bool:
        """Workers at ranks `dead` died: publish the survivors as the next generation and go on
        (True), or, below `min_workers`, publish a stop (False: the run fails as any other)."""
        run, c = self.run, self.run.cluster
        alive = [r for r in range(c.workers) if r not in dead]
        left = [self.ids[r] for r in dead]
        key = f"{run.id}/gen{self.gen + 1}"
        if len(alive) < run.cfg.min_workers:
            self.rdzv.set(key, {"stop": f"{len(alive)} workers left, fewer than min_workers={run.cfg.min_workers}"})
            run.meta["elastic_stop"] = {"left": left, "workers": len(alive), "min_workers": run.cfg.min_workers}
            return False
        self.gen += 1
        self.ids = [self.ids[r] for r in alive]
        self.rdzv.set(key, {"gen": self.gen, "members": self.ids, "left": left, "joined": []})
        # the cluster is its survivors from now on; the run's per-rank bookkeeping follows
        c.engine_ids = [c.engine_ids[r] for r in alive]
        c.infos = [c.infos[r] for r in alive]
        c.view = c.client.direct_view(c.engine_ids)
        for name in ("_cursor", "_ck_version", "_status", "_steps"):
            setattr(run, name, [getattr(run, name)[r] for r in alive])
        run._pieces = {}   # pieces of a checkpoint every old rank was to send: never complete now
        run.meta["events"].append({"step": run.step, "time": time.time() - run._t0,
                                   "membership": {"gen": self.gen, "workers": len(alive), "left": left,
                                                  "joined": [], "steps_lost": None}})
        run._save_meta()
        _repin(c)
        for e in c.engine_ids:   # survivors between collectives stop at their next step (fire and forget)
            try:
                c.client[e].apply_async(notify, run.id, self.gen)
            except Exception:
                pass
        return True

    def grow(self, engines: List[int], infos: List[dict]) -> int:
        """Newcomers (engines prepared by `add_workers`) join at the members' next step; returns it."""
        run, c = self.run, self.run.cluster
        new_ids = list(range(self.next_id, self.next_id + len(engines)))
        msg = {"gen": self.gen + 1, "members": self.ids + new_ids, "left": [], "joined": new_ids}
        pids = list(c.pids) + [d["pid"] for d in infos]
        for w, e in zip(new_ids, engines):   # each waits in the new group's rendezvous for the members
            c.client[e].apply_async(enter, run.id, self.rdzv.host, self.rdzv.port, w, c.timeout_s, pids,
                                    msg).get(timeout=c.timeout_s)
        for e in c.engine_ids:
            c.client[e].apply_async(add_peers, run.id, pids).get(timeout=c.timeout_s)
        for e in engines:
            c.client[e].apply_async(call, "start_run", run.id, run.cfg.to_dict(), None).get(timeout=c.timeout_s)
        self.rdzv.set(f"{run.id}/gen{msg['gen']}", msg)
        # the members re-form at this step (lab.control); under async each at its own next one
        step = run._command({"_members": msg}, each=STRATEGIES.get(run.cfg.strategy.effective()).own_pace)
        if step is None:   # the run ended, or no member would reach the step before the end
            for e in engines:
                c.client[e].apply_async(call, "abort", run.id, "the run ended before the workers joined")
            raise WorkerError(f"run {run.id} ended before the new workers could join")
        self.gen, self.ids, self.next_id = msg["gen"], msg["members"], self.next_id + len(engines)
        c.engine_ids = c.engine_ids + list(engines)
        c.infos = c.infos + list(infos)
        c.view = c.client.direct_view(c.engine_ids)
        k = len(engines)
        run._cursor, run._ck_version = run._cursor + [0] * k, run._ck_version + [-1] * k
        run._status, run._steps = run._status + ["running"] * k, run._steps + [step] * k
        run._pieces = {}
        run.meta["events"].append({"step": step, "time": time.time() - run._t0,
                                   "membership": {"gen": self.gen, "workers": len(self.ids), "left": [],
                                                  "joined": new_ids, "steps_lost": 0}})
        run._save_meta()
        _repin(c)
        return step

    def _on_records(self, run, new: List[dict]) -> None:
        """The survivors' first records after a change say where they resumed and what it cost."""
        changed = False
        for r in new:
            m = r.get("membership")
            if not m:
                continue
            for e in run.meta["events"]:
                em = e.get("membership")
                # (<=: a generation superseded while it formed resumed with the next one)
                if em and em["gen"] <= m["gen"] and em.get("steps_lost") is None:
                    e["step"], em["steps_lost"], em["recovery_s"] = r["step"], m["steps_lost"], m["recovery_s"]
                    if "server" in m:   # what became of a parameter server's state (lab.elastic)
                        em["server"] = m["server"]
                    changed = True
        if changed:
            run._save_meta()


def add_workers(cluster, k: int = 1, run=None) -> List[int]:
    """Start `k` more local engines; they join `run` (an elastic run going on) at its next step,
    with parameters, optimizer state and step from a live peer, or, with no run, the cluster's
    group at once. Returns the new workers' ranks."""
    import psutil
    check(isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 64, "k", "an integer in [1, 64]", k)
    check(cluster.ipp is not None and cluster.net is None and not hasattr(cluster, "parent"), "cluster",
          "a local cluster started by Cluster.start (add_workers starts engines on this machine)", repr(cluster))
    if run is not None:
        check(getattr(run, "_elastic", None) is not None and not run.done, "run", "an elastic run that is going",
              getattr(run, "id", run))
    client = cluster.client
    before = set(client.ids)
    cluster.ipp.start_engines_sync(k)
    deadline = time.time() + cluster.timeout_s
    while len(set(client.ids) - before) < k:
        if time.time() > deadline:
            raise WorkerError(f"{k} new engine(s) did not register within {cluster.timeout_s:.0f} s")
        time.sleep(0.1)
    engines = sorted(set(client.ids) - before)[:k]
    lease = str(cluster.lease.path) if cluster.lease is not None else None
    if lease:
        for e in engines:
            client[e].apply_async(call, "start_watchdog", lease, getattr(cluster, "grace_s", 120.0), None
                                  ).get(timeout=cluster.timeout_s)
    d0 = cluster.infos[0]
    n = cluster.workers
    host = client[cluster.engine_ids[0]].apply_async(engine_host).get(timeout=cluster.timeout_s)
    infos = [client[e].apply_async(prepare, n + i, n + k, d0["device"], d0["threads"], d0["backend"],
                                   cluster.timeout_s, host).get(timeout=cluster.timeout_s)
             for i, e in enumerate(engines)]
    for d in infos:   # stop() ends them (and their nannies) with the others
        proc = psutil.Process(d["pid"])
        cluster._procs += [proc] + proc.children(recursive=True)
    if run is not None:
        run._elastic.grow(engines, infos)
    else:
        rdzv = rendezvous(cluster)
        ids = cluster.engine_ids + engines
        prefix = f"cluster/{time.time_ns()}/"
        ars = [client[e].apply_async(rejoin, rdzv.host, rdzv.port, prefix, r, len(ids), cluster.timeout_s)
               for r, e in enumerate(ids)]
        cluster.infos = [ar.get(timeout=cluster.timeout_s * 2) for ar in ars]
        cluster.engine_ids = ids
        cluster.view = client.direct_view(ids)
        _repin(cluster)
    return list(range(n, n + k))


def _repin(cluster) -> None:
    """The cores planned for the workers there are now (lab.affinity); a worker that does not
    answer within seconds is the next `Run.poll`'s to notice, not this one's."""
    try:
        cluster.pin_cores(timeout=5.0)
    except WorkerError:
        pass
