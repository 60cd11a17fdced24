"""Run a function on n local processes joined in one gloo group on loopback (no ipyparallel).

What the conformance suite (tests/test_conformance.py) and the decentralised bench use to run
`lab.train.Trainer` on several workers in a few seconds. Each process is a fresh interpreter
(torch.multiprocessing "spawn"), uses one thread, keeps gloo's sockets and the rendezvous store
on 127.0.0.1, and sends its result back pickled through a queue. Whatever happens (an error on
one rank, a hang, a timeout) every process is joined or killed before `run_group` returns.

Spawning costs seconds (each process imports torch), so a `Group` keeps its processes for many
jobs; `run_group` and `train(world=n)` make a fresh one for a single job.

Example:
    >>> from lab.procs import Group, run_group, train
    >>> run_group(_square, 2, 3)                 # _square(rank, world, x): a module-level function
    [9, 9]
    >>> with Group(2) as g:                      # two runs on the same two processes
    ...     a = train(RunConfig(steps=20), g)    # per rank: records, model state, ...
    ...     b = train(RunConfig(steps=20).replace(strategy="gossip"), g)
"""
from __future__ import annotations

import datetime
import io
import os
import queue
import socket
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.multiprocessing as mp

STORE: Dict[str, Any] = {}  # in a child: "store" -> the group's TCPStore
START_S = 300.0  # at least this long for processes to start (each imports torch: minutes on a loaded machine)


class GroupError(RuntimeError):
    """A rank failed or the group ran out of time (the message holds the rank's traceback)."""


def _pack(obj) -> bytes:
    """Tensors through bytes: a queue's shared-memory tensors die with the process that sent them."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _unpack(data: bytes):
    return torch.load(io.BytesIO(data), weights_only=False)


def _child(rank, world, port, jobs, results, timeout_s):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # gloo's own sockets on loopback too
    torch.set_num_threads(1)
    import torch.distributed as dist
    try:
        td = datetime.timedelta(seconds=timeout_s)
        if rank == 0:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))  # loopback only; the kernel picks a free port
            sock.listen(128)
            STORE["socket"] = sock
            port.value = sock.getsockname()[1]  # before the store: its constructor waits for the others
            store = dist.TCPStore("127.0.0.1", port.value, world, is_master=True, timeout=td,
                                  use_libuv=False, master_listen_fd=sock.fileno())
        else:
            deadline = time.monotonic() + timeout_s
            while port.value == 0:
                if time.monotonic() > deadline:
                    raise TimeoutError("rank 0 never opened the store")
                time.sleep(0.01)
            store = dist.TCPStore("127.0.0.1", port.value, world, is_master=False, timeout=td)
        STORE["store"] = store
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=td)
        from lab.comm import register_control  # the control plane beside it, as lab.worker.make_groups
        register_control(None, dist.new_group(backend="gloo", timeout=td))
        import lab.train  # noqa: F401  (warm: every job after the first starts at once)
        results.put((rank, -1, True, b""))
        parent = os.getppid()
        while True:
            try:
                job = jobs.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent:  # the parent died without closing the group: do not linger
                    break
                continue
            if job is None:
                break
            job_id, fn, args, kwargs = job
            try:
                out = (rank, job_id, True, _pack(fn(rank, world, *args, **kwargs)))
            except BaseException:
                out = (rank, job_id, False, traceback.format_exc())
            results.put(out)
            if not out[2]:
                break  # the group may be half-way through a collective: the parent ends it
            dist.barrier()  # the next job starts together (and no rank reads a stale message)
    except BaseException:
        results.put((rank, -1, False, traceback.format_exc()))
    results.close()
    results.join_thread()  # the results are out; skip the teardown (the store's daemon thread
    os._exit(0)            # would otherwise trip over its closed socket)


class Group:
    """`world` processes joined in one gloo group, kept alive between jobs (each spawn costs seconds).

    Example:
        >>> with Group(2) as g:
        ...     g.run(_square, 3)      # _square(rank, world, x) at module level
        [9, 9]

    A job that fails on any rank, or runs past its timeout, ends the group (every process is
    killed) and raises GroupError; the next `run` starts a fresh group.
    """

    def __init__(self, world: int, timeout: float = 120.0):
        self.world, self.timeout = world, timeout
        self.procs: List[Any] = []
        self.jobs_done = 0

    def start(self) -> "Group":
        ctx = mp.get_context("spawn")
        self.results = ctx.Queue()
        self.jobs = [ctx.Queue() for _ in range(self.world)]
        port = ctx.Value("i", 0)
        wait_s = max(self.timeout, START_S)
        self.procs = [ctx.Process(target=_child, args=(r, self.world, port, self.jobs[r], self.results, wait_s),
                                  daemon=True, name=f"lab-procs-{r}") for r in range(self.world)]
        for p in self.procs:
            p.start()
        self._collect(-1, wait_s)
        return self

    def run(self, fn: Callable, *args, timeout: Optional[float] = None, **kwargs) -> List[Any]:
        """Call `fn(rank, world, *args, **kwargs)` on every rank; the results by rank."""
        if not self.alive:
            self.start()
        self.jobs_done += 1
        for q in self.jobs:
            q.put((self.jobs_done, fn, args, kwargs))
        return self._collect(self.jobs_done, timeout or self.timeout)

    @property
    def alive(self) -> bool:
        return bool(self.procs) and all(p.is_alive() for p in self.procs)

    def _collect(self, job_id: int, timeout: float) -> List[Any]:
        out: Dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        try:
            while len(out) < self.world:
                try:
                    rank, jid, ok, data = self.results.get(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
                except queue.Empty:
                    dead = [r for r, p in enumerate(self.procs) if r not in out and p.exitcode is not None]
                    if dead:  # died without a word (killed, segfault): its result cannot come any more
                        raise GroupError(f"rank {dead[0]} exited with code {self.procs[dead[0]].exitcode} and no result")
                    if time.monotonic() > deadline:
                        raise GroupError(f"timeout after {timeout:.0f} s; ranks without a result: "
                                         f"{[r for r in range(self.world) if r not in out]}")
                    continue
                if not ok:
                    raise GroupError(f"rank {rank} failed:\n{data}")
                if jid == job_id:
                    out[rank] = _unpack(data) if data else None
        except BaseException:
            self.close()
            raise
        return [out[r] for r in range(self.world)]

    def close(self) -> None:
        """Ask every process to finish, then terminate and kill what is left: nothing stays running."""
        for p, q in zip(self.procs, getattr(self, "jobs", [])):
            if p.is_alive():
                q.put(None)
        deadline = time.monotonic() + 5
        for p in self.procs:
            p.join(timeout=max(0.1, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        self.procs = []

    def __enter__(self) -> "Group":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self):
        return f"Group(world={self.world}, {'alive' if self.alive else 'stopped'}, jobs={self.jobs_done})"


def run_group(fn: Callable, world: int, *args, timeout: float = 60.0, **kwargs) -> List[Any]:
    """Call `fn(rank, world, *args, **kwargs)` once on `world` fresh processes in one gloo group.

    `fn` must be importable (module level). Inside it, the default process group is set up and
    `lab.procs.STORE["store"]` is the group's TCPStore. Raises GroupError with the first
    failing rank's traceback, or when `timeout` seconds pass; every process is gone afterwards.
    """
    with Group(world, timeout=timeout) as g:
        return g.run(fn, *args, **kwargs)


# -- running the real training loop on the group ---------------------------------------------------
def context(rank: int, world: int, run_id: str = "procs"):
    """A WorkerContext on this process's group (CPU, a fresh Comm, the group's store)."""
    from .comm import Comm
    from .strategies.base import WorkerContext
    return WorkerContext(rank=rank, world=world, device=torch.device("cpu"), comm=Comm(rank, world),
                         store=STORE.get("store"), run_id=run_id)


def scripted_control(changes: Optional[Dict[int, dict]]):
    """A ControlPoint whose changes are already agreed: `{step: {knob: value}}`, applied before `step`."""
    if not changes:
        return None
    from .control import ControlPoint
    cp = ControlPoint(timeout=30.0)
    for i, (step, change) in enumerate(sorted(changes.items())):
        cp.propose(i, change)
        cp.finalize(i, step)
    return cp


def _train(rank, world, cfg_dict, changes, resume, probe, run_id):
    from .config import RunConfig
    from .train import Trainer
    records, checkpoints = [], []
    trainer = Trainer(RunConfig.from_dict(cfg_dict), context(rank, world, run_id), records.append,
                      scripted_control(changes), checkpoints.append, resume)
    trainer.run()
    out = {"records": records, "checkpoints": checkpoints, "after_last_step": trainer.after_last_step,
           "model": {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()},
           "optimizer": trainer.optimizer.state_dict(), "strategy": type(trainer.strategy).__name__}
    if probe is not None:
        out["probe"] = probe(trainer)
    return out


def train(cfg, world=2, *, changes: Optional[Dict[int, dict]] = None, resume=None,
          probe: Optional[Callable] = None, timeout: Optional[float] = None, run_id: Optional[str] = None) -> List[dict]:
    """Run `lab.train.Trainer` for `cfg` (a RunConfig) on `world` local processes.

    Args:
        cfg: the run's config.
        world: the number of workers (fresh processes), or a running `Group` to reuse.
        changes: live changes `{step: {knob: value}}`, applied through `Trainer.apply` at that step.
        resume: what `Trainer(resume=...)` takes (a checkpoint), the same for every rank.
        probe: a module-level `f(trainer) -> picklable`, called on each rank after the run.
        timeout: seconds for the whole run (default: the group's, or 120 s for fresh processes).

    Returns:
        One dict per rank: `records` (each step's record), `checkpoints` (what `on_checkpoint`
        received), `after_last_step`, `model` and `optimizer` (final state dicts), `strategy`
        (the class that ran last) and `probe` (the probe's result, if any).
    """
    import uuid
    run_id = run_id or f"procs-{uuid.uuid4().hex[:8]}"  # a fresh namespace in the store per run
    if isinstance(world, Group):
        return world.run(_train, cfg.to_dict(), changes, resume, probe, run_id, timeout=timeout)
    return run_group(_train, world, cfg.to_dict(), changes, resume, probe, run_id, timeout=timeout or 120.0)
