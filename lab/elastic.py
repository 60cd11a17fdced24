"""Elastic runs: when a worker dies, the others re-form the process group without it and go on.

A run with `elastic=True` (and `min_workers`) survives a worker's death (chapter 11):

1. *Noticed.* The survivors' next collective fails at once (gloo sees the dead peer's sockets
   close); a survivor that failed shuts down its own gloo connections (`_cut_pairs`: destroying
   a group does not close them), so any survivor still waiting on it fails too. The notebook sees the engine's process gone within a
   poll (`lab.runs.Run.poll`) and tells every survivor, so one busy with local steps (`local`)
   stops at its next step instead of waiting for its next collective.
2. *Agreed.* The notebook publishes the new membership (the survivors' worker ids, in their new
   rank order) under a new generation in a key/value store it hosts itself (`lab.membership`), so the
   store outlives any worker. Below `min_workers` it publishes a stop instead and the run fails
   with the usual one-line error.
3. *Re-formed.* Each survivor joins a new default process group of the survivors
   (`PrefixStore(f"{run}/gen{g}/", store)`), and the control group beside it
   (`lab.worker.make_groups`).
4. *Restored.* The survivors go back to the last state every one of them holds (`RESTORE`, one
   entry per strategy): under `sync` the last step every survivor finished (one of them may have
   finished one more: it redoes it); under `local` the last averaging; under `ps` the server's
   state, which its hot standby (rank 1) mirrors, so it moves to a survivor when the server dies;
   under `async` and `ssp` the server thread's state (nobody goes back: each worker's pushes were
   applied), which its standby (rank 1) receives with every reply it reads, so it too moves to a
   survivor when the server's worker dies. The survivor holding it broadcasts parameters and optimizer state
   through the data plane, so the ledger counts those bytes (in the next record), and all
   survivors hold identical replicas.
5. *Re-sharded.* Each takes its shard of the data for the new world size and carries on. Its
   first record after that carries `membership` (generation, workers, who left, steps lost,
   recovery seconds): the dashboards mark it on every plot as they mark a live change, and the
   run's summary lists it (`summary()["membership"]`).

Joining: `cluster.add_workers(k, run)` (`lab.membership.add_workers`) starts `k` engines; the
members re-form with them at their next step boundary (a live change, `lab.control`; under async,
whose workers go at their own pace, each member at its own next one: `Strategy.own_pace`): they leave their
group with the same state (the strategy's `detach`), rank 0 broadcasts parameters and optimizer
state, and the newcomers start from there at the members' earliest step (`Guard.join`), never from
disk. Under async a worker that did all its steps stays in the group until every worker has
(`Guard.hold`), so the others can still re-form with it (the server lives on rank 0).
Without a run, `cluster.add_workers(k)` re-forms the cluster's group with the newcomers at once.

Records keep each worker's id from the start of the run in `rank` (a survivor's new rank in the
re-formed group is only its position there; a newcomer gets the next id), so a worker's curve stays
its own across changes. After such a run the cluster is its members (`cluster.workers` follows).

A second death while the survivors re-form: before forming a generation's group, every member says
it arrived (in the store) and waits for the others; the notebook's next generation, published when
it sees the second death, sends them on to that one at once (no waiting out a group's timeout).

Limits: an `async` or `ssp` server's updates after its standby's last read are lost with the
server's worker (a few: the standby reads every step), and when the server and its standby die
together the optimizer state restarts from the newest parameters a survivor read (the membership
mark says `server: restarted`). A member that dies after it arrived and before the group formed
is still waited for until the group's timeout; that error, as any arrival timeout, names how far
each missing worker's recovery got (each says so in the store: `Guard._phase`).
"""
from __future__ import annotations

import datetime
import json
import socket
import time
from typing import Callable, Dict, List, Optional

import torch

from .errors import LabError, WorkerError, check


# -- which strategies can recover, and how ---------------------------------------------------------
class Restore:
    """How a strategy's last consistent state is kept (one instance per worker and run).

    `committed(info)` after each step (None: at the start) returns True when the state after it is
    consistent (the same on every worker). After a failure every survivor says what it holds
    (`claim`); the lowest committed step wins and, among those holding it, the highest `claim`
    (e.g. the one holding a server's state); that holder `settle`s (makes its live model and
    optimizer the consistent state) and broadcasts them. Under a `lockstep` strategy every survivor
    goes back to that step; otherwise (a server's) each goes on from its own."""
    server = False     # a parameter server's strategy: the membership mark says what became of its state
    mirrored = False   # a standby holds the server's whole state (the server's death loses nothing)
    lockstep = True    # every survivor goes back to the same step (else each goes on from its own)

    def __init__(self, trainer):
        self.t = trainer
        self.snapshot: Optional[dict] = None

    def committed(self, info) -> bool:
        raise NotImplementedError

    def claim(self) -> int:
        return 0

    def moved(self, claim: int) -> bool:
        """Whether the survivor with this claim held the dead server's whole state (its standby)."""
        return self.mirrored and claim > 0

    def settle(self) -> None:
        if self.snapshot is not None:
            self.t.model.load_state_dict(self.snapshot["model"])
            self.t.optimizer.load_state_dict(self.snapshot["optimizer"])

    def take(self) -> dict:
        from .checkpoints import to_cpu   # copies, on the CPU (the control plane's side)
        t = self.t
        return {"model": to_cpu(t.model.state_dict()), "optimizer": to_cpu(t.optimizer.state_dict())}


class EveryStep(Restore):
    """`sync`: every replica applies the same update each step, so the live state is the last
    consistent one (a failed step fails in its all-reduce, before any update): no copy kept."""

    def committed(self, info) -> bool:
        return True


class LastAverage(Restore):
    """`local`: the replicas agree only right after an averaging: a copy is kept then."""

    def committed(self, info) -> bool:
        if info is None or info.extra.get("averaged"):
            self.snapshot = self.take()
            return True
        return False


class ServerState(EveryStep):
    """`ps`: after each step every worker holds the server's parameters; the server (rank 0) and
    its hot standby (rank 1, `lab.strategies.ps`) also its optimizer state. When the server died,
    the standby becomes the new rank 0 and hands both to everyone; only when both died does the
    optimizer state restart (Adam's moments, momentum)."""
    server = mirrored = True

    def claim(self) -> int:
        return int(getattr(self.t.strategy, "holds_server", False))


class ServerHeld(Restore):
    """`async`, `ssp`: the server's state is the consistent one; nobody rolls back (each worker's
    pushes were applied as they came: a worker goes on from its own step). If the server's worker
    survived, it hands the server's parameters and optimizer state to everyone; if it died, its
    standby (rank 1, `lab.strategies.server`) hands over the server's state as of its last read
    (the parameters it read and the optimizer state sent with them); if both died, the survivor
    that read the newest parameters (the server's version in each reply) does, and the optimizer
    state restarts."""
    server, mirrored, lockstep = True, True, False
    SERVER, COPY = 1 << 40, 1 << 39   # claims above any version read

    def committed(self, info) -> bool:
        return True

    def claim(self) -> int:
        st = self.t.strategy
        if getattr(st, "server", None) is not None:
            return self.SERVER
        return self.COPY if getattr(st, "copy", None) is not None else int(getattr(st, "version_read", 0))

    def moved(self, claim: int) -> bool:
        return claim >= self.COPY

    def settle(self) -> None:
        st = self.t.strategy
        if getattr(st, "server", None) is not None:
            st.server.state_into(st.params(), self.t.optimizer)
        elif getattr(st, "copy", None) is not None:   # the parameters are the ones read with it
            self.t.optimizer.load_state_dict(st.copy)



RESTORE: Dict[str, Callable] = {"sync": EveryStep, "local": LastAverage, "ps": ServerState,
                                "async": ServerHeld, "ssp": ServerHeld}


def check_config(cfg, workers: Optional[int] = None) -> None:
    """One-line errors for an elastic run that cannot be one (called by RunConfig.validate)."""
    name = cfg.strategy.effective()
    check(not cfg.elastic or name in RESTORE, "elastic",
          f"off for strategy {name} (elastic runs: {', '.join(sorted(RESTORE))})", cfg.elastic)
    if cfg.elastic and workers is not None:
        check(cfg.min_workers <= workers, "min_workers", f"an integer in [1, {workers}] (the cluster's workers)",
              cfg.min_workers)


def events(meta: dict) -> List[dict]:
    """The membership changes of a run (from its meta.json): [{"step", "gen", "workers", "left",
    "joined", "steps_lost", "recovery_s"}]."""
    return [{"step": e["step"], **e["membership"]} for e in meta.get("events", []) if "membership" in e]


# -- the engine side ------------------------------------------------------------------------------
_W: dict = {}        # what lab.worker lends this module (it sits above: bound when lab.worker loads)


def bind(**worker) -> None:
    """Called by lab.worker as it loads: its STATE, RUNS, context, make_groups, iface_for and info."""
    _W.update(worker)


LINKS: dict = {}     # run id -> {"store", "worker", "notified"}: this engine's part in an elastic run
_STORES: dict = {}   # (host, port) -> a client of the notebook's store, kept for the engine's life


def engine_host() -> str:
    """The address this engine's cluster rendezvouses on (lab.worker.setup's `host`)."""
    return _W["STATE"].get("host") or "127.0.0.1"


def enter(run_id: str, host: str, port: int, worker: int, timeout_s: float, peers=(), join=None) -> None:
    """Runs on an engine: take part in elastic run `run_id` as worker `worker`; `peers`: the
    engines' process ids (their gloo connections are cut when this worker leaves a group)."""
    import torch.distributed as dist
    STATE = _W["STATE"]
    if (host, port) not in _STORES:
        _STORES[host, port] = dist.TCPStore(host, port, is_master=False,
                                            timeout=datetime.timedelta(seconds=timeout_s))
    LINKS.clear()   # earlier runs are over (lab.worker.start_run refuses to start beside a live one)
    ports = {port} | {p for p in (getattr(STATE.get("store"), "port", None),) if p}   # never cut a store's
    LINKS[run_id] = {"store": _STORES[host, port], "worker": worker, "notified": 0, "peers": set(peers),
                     "store_ports": ports}
    if join is not None:   # a newcomer: it joins generation join["gen"] (Guard.join)
        LINKS[run_id]["join"] = join


def add_peers(run_id: str, pids) -> None:
    """Runs on an engine: newcomers' processes are peers too (their connections are cut on a failure)."""
    if run_id in LINKS:
        LINKS[run_id]["peers"] |= set(pids)


def prepare(rank: int, world: int, device: str, threads: int, backend: str, timeout_s: float, host: str) -> dict:
    """Runs on a newcomer's engine: what `lab.worker.setup` sets, without a process group yet
    (it joins one with the others: `Guard.join`, or `regroup` outside a run)."""
    import os
    from . import models, tasks  # noqa: F401  (imported now, not while the members wait at the boundary)
    ifname = _W["iface_for"](host)
    if ifname:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", ifname)
    torch.set_num_threads(max(1, threads))
    _W["STATE"].update(rank=rank, world=world, device=device, backend=backend, threads=threads, host=host,
                       timeout_s=timeout_s, store=None)
    return _W["info"]()


def rejoin(host: str, port: int, prefix: str, rank: int, world: int, timeout_s: float) -> dict:
    """Runs on every engine at once, outside any run: a new default group of them all (after add_workers)."""
    import torch.distributed as dist
    busy = [r.id for r in _W["RUNS"].values() if r.thread is not None and r.thread.is_alive()]
    if busy:
        raise RuntimeError(f"run {busy[0]} is still going on this worker: workers join a run only if it is elastic")
    if (host, port) not in _STORES:
        _STORES[host, port] = dist.TCPStore(host, port, is_master=False, timeout=datetime.timedelta(seconds=timeout_s))
    _leave_group()
    _join_group(prefix, _STORES[host, port], rank, world)
    return _W["info"]()


def notify(run_id: str, gen: int) -> None:
    """Runs on an engine: the notebook published generation `gen`; the training thread re-forms at its next step."""
    link = LINKS.get(run_id)
    if link is not None:
        link["notified"] = max(link["notified"], gen)


class Regroup(RuntimeError):
    """The membership changed: leave the step and re-form (raised at a step's start)."""


class Guard:
    """The training thread's side (`Trainer.elastic`): keep the consistent state, recover."""

    def __init__(self, trainer, link: dict):
        self.t, self.link = trainer, link
        self.worker, self.store, self.gen = link["worker"], link["store"], 0
        self.done = self.committed = trainer.start_step   # steps applied / the consistent state's step
        self.restore = None
        self.joining = "join" in link   # a newcomer (add_workers): Guard.join instead of the start barrier
        self.members = list(link["join"]["members"]) if self.joining else list(range(trainer.ctx.world))
        ctx = trainer.ctx
        # the strategies' store waits give way when the workers change, and their keys live in the
        # notebook's store, which outlives any worker (rank 0's engine hosts the cluster's)
        ctx.elastic, ctx.interrupt, ctx.store = True, self.check, self.store

    def begin(self) -> None:
        """After the strategy attached, before the first step: the starting state is consistent."""
        self.restore = RESTORE[self.t.cfg.strategy.effective()](self.t)
        self.restore.committed(None)

    def check(self) -> None:
        """At a step's start: re-form now if the notebook published a newer generation."""
        if self.link["notified"] > self.gen:
            raise Regroup(f"generation {self.link['notified']} published")

    def after_step(self, step: int, info) -> None:
        self.done = step + 1
        if self.restore is not None and self.restore.committed(info):
            self.committed = step + 1

    def recover(self, step: int, exc: BaseException) -> int:
        """After `exc` broke step `step`: re-form with the survivors, restore, re-shard; returns the
        step to go on from. Re-raises `exc` when it is no membership change (an abort, a bug)."""
        t = self.t
        ctx = t.ctx
        name = t.cfg.strategy.effective()
        if isinstance(exc, LabError) or not isinstance(exc, RuntimeError) or ctx.aborted() or name not in RESTORE:
            raise exc
        t0 = time.perf_counter()
        self._phase(f"failed at step {step}: {type(exc).__name__}")
        _cut_pairs(self.link["peers"], self.link["store_ports"])   # peers still waiting on this one fail now
        self._phase("closed its connections")
        _leave_group()
        self._phase("left its group")
        t.strategy.abandon()   # its threads and hooks go; its state (a server's) stays for `settle`
        claim = self.restore.claim()   # (before the ranks change)
        server_id = self.members[0] if self.members else None
        msg = self._next_generation(self.gen)
        left = set(msg.get("left", []))
        while True:
            try:
                self._reform(msg)
                break
            except Regroup:   # another member died while this generation formed: on to the next
                msg = self._next_generation(msg["gen"])
                left |= set(msg.get("left", []))
        msg = dict(msg, left=sorted(left))
        server_died = server_id in left
        # the last consistent state: under a lockstep strategy the lowest step any survivor holds (all
        # go back to it), from the survivor with the best claim on it; else the best claim's
        import torch.distributed as dist
        STATE = _W["STATE"]
        mine = torch.tensor([self.committed, self.done, claim], dtype=torch.int64)
        every = [torch.zeros(3, dtype=torch.int64) for _ in range(ctx.world)]
        dist.all_gather(every, mine, group=STATE.get("control"))
        lockstep = self.restore.lockstep
        target = min(int(v[0]) for v in every) if lockstep else self.done
        reached = max(int(v[1]) for v in every)
        holder = max((r for r, v in enumerate(every) if int(v[0]) == target or not lockstep),
                     key=lambda r: (int(every[r][2]), -r))
        server = None
        if self.restore.server:   # what became of the server's state
            moved = self.restore.moved(int(every[holder][2]))   # a standby held the server's state
            server = ("moved" if moved else "restarted") if server_died else "kept"
        self._handover(holder, target)
        self._adopt(target, msg, reached - target if lockstep else 0, t0, server)
        return target

    def regroup(self, msg: dict) -> None:
        """Planned (workers join): at a step boundary every member is at the same step; they leave
        their group with the same state (the strategy's `detach`), re-form with the newcomers, and
        rank 0 hands its state to everyone."""
        t0, t = time.perf_counter(), self.t
        self._phase(f"re-forming at step {t.step} (workers join)")
        t.strategy.detach()
        _leave_group()
        self._reform(msg)
        self._handover(0, t.step)
        self._adopt(t.step, msg, 0, t0, "kept" if self.restore.server else None)

    def hold(self, step: int) -> int:
        """After this worker's last step, under a strategy whose workers go at their own pace
        (`Strategy.own_pace`: async), where a join reaches each worker at its own next boundary
        (lab.runs.Run._command): stay at the end's boundary until every worker is done
        (`Strategy.finish`, `finished`), so a join while the others still train re-forms with this
        worker too. Failures raise, as in a step; the trainer recovers and holds again. (Elsewhere a
        join comes at one step for all, which a finished worker never reaches: it is refused.)"""
        t = self.t
        if not t.strategy.own_pace:
            return step
        t.step = step   # (a join hands on the members' earliest step)
        self._phase("did all its steps; holding until every worker has")
        while True:
            t.strategy.finish()
            done = t.strategy.finished()
            if t.ctx.aborted():
                raise WorkerError(t.ctx.aborted())
            self.check()
            # a join's `done`s come only after its change was proposed to every worker (lab.control),
            # so when `done` was seen above and no change is due or unsettled here, the run is over
            if t._boundary(step, proceed=False) or t.stopped:
                if t.stopped:
                    return step
                continue
            if done:
                return step
            time.sleep(0.02)

    def join(self) -> None:
        """A newcomer (`add_workers`): join the group the members re-form at their next step and
        take parameters, optimizer state and step from rank 0."""
        t0, t = time.perf_counter(), self.t
        msg = self.link["join"]
        self._reform(msg)
        step = self._handover(0, None)
        t.start_step = t.step = step
        self._adopt(step, msg, 0, t0, None)

    def _reform(self, msg: dict) -> None:
        """Join generation `msg["gen"]`'s group; this worker's context follows its new rank."""
        t = self.t
        ctx = t.ctx
        rank, world = msg["members"].index(self.worker), len(msg["members"])
        self._arrive(msg)
        _join_group(f"{ctx.run_id}/gen{msg['gen']}/", self.store, rank, world)
        fresh = _W["context"](ctx.run_id)
        ctx.rank, ctx.world, ctx.group, ctx.store = fresh.rank, fresh.world, fresh.group, self.store
        link = ctx.comm.link
        ctx.comm = fresh.comm
        ctx.comm.link = link
        ctx.slowdown = t.cfg.slowdown_of(self.worker)
        self.members = list(msg["members"])

    def _handover(self, src: int, step) -> int:
        """Rank `src` makes its live model and optimizer the consistent state and broadcasts them
        (parameters and optimizer state through the data plane, so the ledger counts them: they go
        in the next record); the earliest member's `step` comes back on every member (None: a newcomer's)."""
        import torch.distributed as dist
        from .strategies.averaging import broadcast_state
        t, ctx = self.t, self.t.ctx
        if ctx.rank == src and self.restore is not None:
            self.restore.settle()
        # the step to go on from: the earliest any member holds (all hold the same one in lockstep;
        # under async a newcomer starts with the slowest member, so it ends no later than the run)
        box = torch.tensor([(1 << 62) if step is None else step], dtype=torch.int64)
        dist.all_reduce(box, op=dist.ReduceOp.MIN, group=_W["STATE"].get("control"))
        lg = ctx.comm.ledger
        lg.reset()
        broadcast_state(ctx.comm, [p for p in t.model.parameters() if p.requires_grad], t.optimizer, src=src)
        from .comm import add_counters
        t._carry = add_counters(t._carry, lg.spent())
        return int(box.item())

    def _adopt(self, step: int, msg: dict, lost: int, t0: float, server) -> None:
        """Restart the strategy on the shared state, take this rank's shard, mark the next record."""
        t, ctx = self.t, self.t.ctx
        name = t.cfg.strategy.effective()
        if t.strategy.model is not None:   # (a newcomer's never attached)
            t.strategy.abandon()
        from .devices import checked
        from .strategies import STRATEGIES
        ctx.cache["generation"], ctx.cache["attaches"] = msg["gen"], 0   # the strategies' store keys start afresh
        t.strategy = checked(STRATEGIES.build(t.cfg.strategy.name, t.cfg.strategy, ctx), ctx, t.optimizer)
        t.strategy.attach(t.model, t.optimizer)   # fresh: its counters start at the shared state
        self.restore = RESTORE[name](t)
        self.restore.committed(None)   # the shared state is consistent (local: its snapshot)
        self.done = self.committed = step
        t._batches = t.task.batches(ctx.rank, ctx.world, lambda: t.cfg.data.batch_size)   # the new shards
        self.gen = msg["gen"]
        checksum = float(sum(p.detach().double().sum() for p in t.model.parameters()))
        mark = {"gen": self.gen, "workers": ctx.world, "left": msg.get("left", []),
                "joined": msg.get("joined", []), "steps_lost": lost,
                "recovery_s": time.perf_counter() - t0, "checksum": checksum}
        if server is not None:
            mark["server"] = server
        t._marks["membership"] = mark

    def _arrive(self, msg: dict) -> None:
        """Say this worker is here for generation `msg["gen"]` and wait for every member to say so,
        before forming its group (whose rendezvous would wait out the whole timeout for a member
        that died meanwhile); a newer generation published meanwhile raises Regroup at once."""
        ctx, g = self.t.ctx, msg["gen"]
        prefix = f"{ctx.run_id}/gen{g}/arrived/"
        self.store.set(prefix + str(self.worker), "1")
        keys = [prefix + str(w) for w in msg["members"]]
        timeout = _W["STATE"].get("timeout_s", 30.0)
        deadline = time.monotonic() + timeout
        while not self.store.check(keys):
            if self.store.check([f"{ctx.run_id}/gen{g + 1}"]):
                raise Regroup(f"generation {g + 1} published while generation {g} formed")
            if ctx.aborted():
                raise WorkerError(ctx.aborted())
            if time.monotonic() > deadline:
                missing = [w for w, k in zip(msg["members"], keys) if not self.store.check([k])]
                raise WorkerError(f"worker(s) {missing} did not arrive for generation {g} within {timeout:.0f} s "
                                  f"({'; '.join(self._last_phase(w) for w in missing)})")
            time.sleep(0.01)

    def _phase(self, what: str) -> None:
        """Say in the store where this worker's recovery is (an `_arrive` timeout names it)."""
        try:
            self.store.set(f"{self.t.ctx.run_id}/phase/{self.worker}", json.dumps([what, time.time()]))
        except Exception:   # (a diagnostic: never the reason a recovery fails)
            pass

    def _last_phase(self, worker: int) -> str:
        key = f"{self.t.ctx.run_id}/phase/{worker}"
        if not self.store.check([key]):
            return f"worker {worker} never began to recover: still inside a step or a collective"
        what, when = json.loads(self.store.get(key))
        return f"worker {worker} last said '{what}' {time.time() - when:.1f} s ago"

    def _next_generation(self, after: int) -> dict:
        """Wait for the notebook's generation after `after` (the newest if several are out); a stop
        or none in time: WorkerError."""
        ctx = self.t.ctx
        STATE = _W["STATE"]
        deadline = time.monotonic() + STATE.get("timeout_s", 30.0)
        g = after + 1
        self._phase(f"waiting for generation {g}")
        while True:
            if ctx.aborted():
                raise WorkerError(ctx.aborted())
            if self.store.check([f"{ctx.run_id}/gen{g + 1}"]):
                g += 1   # a newer one is out already (another worker died meanwhile)
                continue
            if self.store.check([f"{ctx.run_id}/gen{g}"]):
                msg = json.loads(self.store.get(f"{ctx.run_id}/gen{g}"))
                if "stop" in msg:
                    raise WorkerError(f"elastic run stopped: {msg['stop']}")
                if self.worker not in msg["members"]:
                    raise WorkerError(f"worker {self.worker} was left out of generation {g}")
                return msg
            if time.monotonic() > deadline:
                raise WorkerError(f"a collective failed and the notebook published no new membership within "
                                  f"{STATE.get('timeout_s', 30.0):.0f} s (is it polling the run?)")
            time.sleep(0.02)


def guard(trainer) -> Optional[Guard]:
    """The trainer's Guard when its run is elastic and runs on a cluster (None in-process)."""
    link = LINKS.get(trainer.ctx.run_id)
    if not trainer.cfg.elastic or link is None:
        return None
    trainer.worker_id = link["worker"]   # records keep the worker's id for the whole run
    return Guard(trainer, link)


def _cut_pairs(peers, store_ports) -> None:
    """Shut down this engine's gloo connections to the other engines (`peers`, process ids).

    Destroying a gloo process group does not close its sockets while anything still holds it, so
    a peer blocked in a receive from this worker would wait for the group's whole timeout.
    Shutting the sockets down makes its receive fail at once, and so on around the group. The
    connections are told apart as `lab.sockets` does: both ends owned by workers, minus the
    rendezvous stores' ports. (Across machines the owners are unknown: then nothing is cut and a
    blocked peer fails at the group's timeout.)"""
    import os
    import psutil
    try:
        owner = {(c.laddr.ip, c.laddr.port): c.pid for c in psutil.net_connections("tcp") if c.laddr and c.pid}
        mine = psutil.Process().net_connections("tcp")
    except (psutil.Error, OSError):
        return
    for c in mine:
        if c.status != psutil.CONN_ESTABLISHED or not c.raddr or c.fd < 0:
            continue
        if c.laddr.port in store_ports or c.raddr.port in store_ports:
            continue
        if owner.get((c.raddr.ip, c.raddr.port)) in peers:
            try:
                s = socket.socket(fileno=os.dup(c.fd))
                s.shutdown(socket.SHUT_RDWR)   # the socket, not only this descriptor: gloo's reads fail
                s.close()
            except OSError:
                pass


def _leave_group() -> None:
    """Destroy this engine's default process group (its sockets close: peers still waiting on it fail)."""
    import torch.distributed as dist
    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:
        pass
    _W["STATE"]["control"] = None


def _join_group(prefix: str, store, rank: int, world: int) -> None:
    """A new default process group (and its control group) of `world` workers, this one as `rank`."""
    import torch.distributed as dist
    st = _W["STATE"]
    td = datetime.timedelta(seconds=st.get("timeout_s", 30.0))
    dist.init_process_group(st["backend"], store=dist.PrefixStore(prefix, store), rank=rank, world_size=world,
                            timeout=td)
    st.update(rank=rank, world=world, store=store)
    make = _W.get("make_groups")
    if make is not None:
        make(st.get("timeout_s", 30.0))
