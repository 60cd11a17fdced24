"""`async`: an asynchronous parameter server, Downpour / Hogwild style (chapter 05).

No barrier: whenever a worker has a gradient it pushes it to the server, which applies it at
once (scaled by 1/n, so a round of n pushes moves as far as one `sync` step) and answers with
its current parameters. Fast workers therefore never wait for slow ones, at a price: a gradient
was computed on parameters that other workers have updated since. Each applied update records
that **staleness**: the number of server updates between the worker's read and its push.

How it runs: the server is a thread on rank 0's engine (started in `attach`, stopped in
`detach`), holding its own copy of the parameters and optimizer; rank 0's own worker talks to it
in-process. Other workers announce each message in the cluster's key/value store (a counter and
one key per message, so the server knows who comes next and waits without polling), then send
the gradient point to point through `ctx.comm` (timed and byte-accounted) and receive the reply.
The server thread is the only user of the process group on rank 0 while it runs.

No hang: every wait here is on the store with a short timeout, between which the thread checks
whether the run was aborted (the notebook aborts every worker when one dies) and gives up.
`detach` drains: each worker announces it is done, the server finishes every message before
those, then rank 0 broadcasts the server's parameters and optimizer state to everyone.
"""
from __future__ import annotations

import copy
import datetime
import threading
from typing import Optional

import torch

from ..compression.wire import codec_for
from ..errors import WorkerError
from . import strategy
from .base import StepInfo, Strategy
from .buckets import flat_grads, flat_params, load_flat, numel, set_grads
from .ps import broadcast_state

TAG = 21            # point-to-point tag of this strategy's messages
POLL_S = 1.0        # how long one store wait lasts before looking for an abort
META = 2            # extra numbers after the parameters in a reply: staleness, clock lag
_EPOCHS: dict = {}  # run id -> how many times a server strategy was attached (same order on every worker)
_CLIENTS: dict = {}  # (host, port, role) -> a private store connection, made once per engine


# -- the store: signalling between workers and the server -----------------------------------------
def store_client(ctx, role: str):
    """A private connection to the cluster's store for one thread (`role`), made once.

    A TCPStore connection serialises its calls, so a thread blocked in `wait` would stall
    every other thread sharing it: each thread gets its own.
    """
    import torch.distributed as dist
    store = ctx.store
    key = (store.host, store.port, role)
    if key not in _CLIENTS:
        _CLIENTS[key] = dist.TCPStore(store.host, store.port, is_master=False,
                                      timeout=datetime.timedelta(seconds=30), wait_for_workers=False)
    return _CLIENTS[key]


def aborted(ctx) -> Optional[str]:
    """Why the run was aborted (a worker died or failed), or None while it goes on."""
    from .. import worker
    st = worker.RUNS.get(ctx.run_id)
    control = getattr(st, "control", None)
    return getattr(control, "aborted", None)


def wait_keys(store, keys, ctx, stop: Optional[threading.Event] = None) -> bool:
    """Wait until every key exists; False if `stop` was set. Raises WorkerError on abort."""
    timeout = datetime.timedelta(seconds=POLL_S)
    while True:
        try:
            store.wait(keys, timeout)
            return True
        except RuntimeError as e:  # DistStoreError on timeout; anything else is a broken store
            if "timeout" not in str(e).lower():
                raise WorkerError(f"worker {ctx.rank}: the cluster's store failed ({e})") from None
        why = aborted(ctx)
        if why:
            raise WorkerError(why)
        if stop is not None and stop.is_set():
            return False


# -- the server's state ---------------------------------------------------------------------------
class Server:
    """The server's parameters and optimizer, updated one push at a time (thread-safe).

    It starts from rank 0's model and optimizer (identical on every worker at attach) and keeps
    its own copies, so rank 0's worker can compute on the parameters it read while the server
    applies other workers' pushes. The user's optimizer stays the source of hyper-parameters
    (a learning-rate change mid-run reaches the server at its next update).
    """

    def __init__(self, params, optimizer, world: int, scale: float):
        self.lock = threading.Lock()
        clone = {id(p): p.detach().clone() for p in params}
        self.params = [clone[id(p)] for p in params]  # the model's order, for flat messages
        self.user_optimizer = optimizer
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [clone[id(p)] for p in g["params"]]}
                  for g in optimizer.param_groups]
        self.optimizer = type(optimizer)(groups, **optimizer.defaults)
        self.optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        self.scale = scale
        self.version = 0               # updates applied since attach
        self.read = [0] * world        # the version each worker last read
        self.clock = [0] * world       # pushes applied per worker (SSP's clocks)

    def push(self, rank: int, grad: torch.Tensor) -> int:
        """Apply one worker's gradient; returns its staleness (updates since that worker read)."""
        with self.lock:
            for mine, theirs in zip(self.optimizer.param_groups, self.user_optimizer.param_groups):
                mine.update({k: v for k, v in theirs.items() if k != "params"})
            staleness = self.version - self.read[rank]
            set_grads(self.params, grad.mul(self.scale))
            self.optimizer.step()
            self.version += 1
            self.clock[rank] += 1
            return staleness

    def read_into(self, rank: int, out: torch.Tensor) -> int:
        """Copy the current parameters into `out`; returns the reader's clock lag behind the slowest."""
        with self.lock:
            flat_params(self.params, out[:out.numel() - META])
            self.read[rank] = self.version
            return self.clock[rank] - min(self.clock)

    def state_into(self, params, optimizer) -> None:
        """Hand the server's parameters and optimizer state back to the model (at detach)."""
        with self.lock:
            load_flat(params, flat_params(self.params))
            optimizer.load_state_dict(copy.deepcopy(self.optimizer.state_dict()))


@strategy("async")
class AsyncPS(Strategy):
    """Asynchronous parameter server: push, get the newest parameters back, never wait for peers."""
    server = True  # gradients go point to point to a server (compressors: lab.compression.wire)

    def attach(self, model, optimizer):
        super().attach(model, optimizer)
        ctx, ps = self.ctx, self.params()
        n = numel(ps)
        self.grad = torch.zeros(n, dtype=ps[0].dtype, device=ps[0].device)
        self.reply = torch.zeros(n + META, dtype=ps[0].dtype, device=ps[0].device)
        # with a compressor, gradients travel as packed bytes (lab.compression.wire)
        self.codec = codec_for(self.cfg, ctx, self.grad, self.name)
        _EPOCHS[ctx.run_id] = _EPOCHS.get(ctx.run_id, 0) + 1
        self.ns = f"lab/{ctx.run_id}/{self.name}/{_EPOCHS[ctx.run_id]}"
        self.store = store_client(ctx, "worker")
        self.server: Optional[Server] = None
        self.thread: Optional[threading.Thread] = None
        self.error: Optional[str] = None
        self.stop = threading.Event()
        self.next_lag = 0          # clock lag of the parameters the next step computes on
        self.steps = 0             # this worker's steps since attach (its clock)
        if ctx.rank == 0:
            self.server = Server(ps, optimizer, ctx.world, 1.0 / ctx.world)
            from ..comm import Comm
            self.server_comm = Comm(0, ctx.world, link=ctx.comm.link)
            self._reported = (0, 0)
            if ctx.world > 1:
                self.thread = threading.Thread(target=self._serve_safely, name=f"lab-ps-{self.ns}", daemon=True)
                self.thread.start()

    # -- the server thread (rank 0) ---------------------------------------------------------
    def _serve_safely(self):
        try:
            self._serve()
        except BaseException as e:  # the worker on rank 0 reports it at its next step
            self.error = f"{type(e).__name__}: {e}"

    def _serve(self):
        ctx, comm, srv = self.ctx, self.server_comm, self.server
        store = store_client(ctx, "server")
        inbox = self.codec.empty(self.grad.device) if self.codec else torch.zeros_like(self.grad)
        decode = self.codec.decode if self.codec else (lambda t: t)
        out = torch.zeros_like(self.reply)
        done, seq = set(), 1
        while len(done) < ctx.world - 1:
            key = f"{self.ns}/m/{seq}"
            if not wait_keys(store, [key], ctx, self.stop):
                return
            kind, src = store.get(key).decode().split()
            src = int(src)
            store.delete_key(key)
            seq += 1
            comm.link = ctx.comm.link  # the link may change mid-run
            if kind == "done":
                done.add(src)
                continue
            staleness = 0
            if kind == "push":
                comm.recv(inbox, src, tag=TAG)
                staleness = srv.push(src, decode(inbox))
            lag = srv.read_into(src, out)
            out[-2], out[-1] = staleness, lag
            comm.send(out, src, tag=TAG)

    # -- a worker's side --------------------------------------------------------------------
    def _announce(self, kind: str) -> None:
        seq = self.store.add(f"{self.ns}/n", 1)
        self.store.set(f"{self.ns}/m/{seq}", f"{kind} {self.ctx.rank}")

    def _exchange(self, push: bool):
        """Push the gradient (or only ask) and load the server's parameters: (staleness, lag)."""
        ctx, comm, ps = self.ctx, self.ctx.comm, self.params()
        if push:
            flat_grads(ps, self.grad)
            mine = self.codec.encode(self.grad) if self.codec else self.grad
            comm.note_payload(mine.numel() * mine.element_size(), self.grad.numel() * 4)
        if ctx.rank == 0:  # in-process with the server: no bytes travel
            if self.error:
                raise WorkerError(f"the parameter server on rank 0 failed: {self.error}")
            staleness = self.server.push(0, self.codec.decode(mine) if self.codec else mine) if push else 0
            lag = self.server.read_into(0, self.reply)
        else:
            self._announce("push" if push else "pull")
            if push:
                comm.send(mine, 0, tag=TAG)
            comm.recv(self.reply, 0, tag=TAG)
            staleness, lag = int(self.reply[-2].item()), int(self.reply[-1].item())
        load_flat(ps, self.reply[:-META])
        return staleness, lag

    def _server_bytes(self) -> dict:
        if self.server is None:
            return {}
        lg = self.server_comm.ledger
        sent, recv = lg.bytes_sent - self._reported[0], lg.bytes_recv - self._reported[1]
        self._reported = (lg.bytes_sent, lg.bytes_recv)
        return {"server_bytes_sent": sent, "server_bytes_recv": recv}

    def unreported(self) -> dict:
        return {k: v for k, v in self._server_bytes().items() if v}

    def step(self, step: int) -> StepInfo:
        lag = self.next_lag
        staleness, self.next_lag = self._exchange(push=True)
        self.steps += 1
        return StepInfo(staleness=staleness, extra={"clock_lag": lag, **self._server_bytes()})

    def detach(self):
        ctx, comm = self.ctx, self.ctx.comm
        if ctx.rank == 0:
            with comm.waiting():  # the server drains every message sent before each worker's `done`
                while self.thread is not None and self.thread.is_alive():
                    self.thread.join(POLL_S)
                    why = aborted(ctx)
                    if why:
                        self.stop.set()
                        raise WorkerError(why)
            if self.error:
                raise WorkerError(f"the parameter server on rank 0 failed: {self.error}")
            self.server.state_into(self.params(), self.optimizer)
            if ctx.world == 1:
                return
            self.store.set(f"{self.ns}/final", "1")
        else:
            self._announce("done")
            with comm.waiting():  # a fast worker may wait here for the stragglers to finish
                wait_keys(self.store, [f"{self.ns}/final"], ctx)
        broadcast_state(comm, self.params(), self.optimizer, src=0)
