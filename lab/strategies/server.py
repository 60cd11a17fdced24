"""The asynchronous parameter server on rank 0: its state and the thread that serves it (`async`, `ssp`).

`Server` holds its own copy of the parameters and optimizer and applies one push at a time
(thread-safe). `Serving` is the thread on rank 0's engine that answers the other workers: each
message is announced in the store (a counter and one key per message, so the server knows who
comes next and waits without polling, `lab.strategies.signals`), then the gradient arrives
point to point through its own `Comm` (timed and byte-accounted apart from rank 0's worker)
and the reply carries the current parameters plus META numbers (whether the server's optimizer
state follows, staleness, clock lag, and the server's version).

The standby (elastic runs, `lab.elastic`): every reply to rank 1 is followed by the server's
optimizer state as of that reply (serialised; counted in the server's bytes). With the reply's
parameters, rank 1 then holds the server's whole state as of its last read, so when the server's
worker dies its parameters *and* optimizer state move to rank 1 (the membership mark says
`server: moved`) and only the updates applied after rank 1's last read are lost. (Replaying each
update to a copy instead would cost about n gradients between two reads of rank 1, an optimizer
step for each on rank 1, and a queue that grows without bound when rank 1 falls behind; the state
is 2 B under Adam, B under momentum, whatever rank 1's pace.)
"""
from __future__ import annotations

import copy
import threading
from typing import Optional, Tuple

import torch

from .. import affinity
from ..checkpoints import to_cpu
from .averaging import pack_state
from .buckets import flat_params, load_flat, set_grads
from .signals import store_client, wait_keys

TAG = 21   # point-to-point tag of the server's messages
META = 4   # extra numbers after the parameters in a reply: the optimizer state follows (1) or not (0),
           # staleness, clock lag, server version
STANDBY = 1   # the rank that holds the server's state beside it in an elastic run


class ServerDown(RuntimeError):
    """The server thread stopped on an error (a worker it talked to died, its group broke). Not a
    LabError: an elastic run re-forms on it (`lab.elastic`), any other run fails with it."""


class Server:
    """The server's parameters and optimizer, updated one push at a time (thread-safe).

    It starts from rank 0's model and optimizer (identical on every worker at attach) and keeps
    its own copies, so rank 0's worker can compute on the parameters it read while the server
    applies other workers' pushes. The user's optimizer stays the source of hyper-parameters
    (a learning-rate change mid-run reaches the server at its next update).
    """

    def __init__(self, params, optimizer, world: int, scale: float, standby: bool = False):
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
        self.standby = standby         # replies to rank STANDBY carry the optimizer state (elastic runs)

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

    def read_into(self, rank: int, out: torch.Tensor) -> Tuple[int, Optional[torch.Tensor]]:
        """Copy the current parameters into `out` and their version into its last number; returns
        the reader's clock lag behind the slowest and, for the standby, the optimizer state of the
        same moment (`pack_state`; `out[-4]` says whether it follows), else None."""
        with self.lock:
            flat_params(self.params, out[:out.numel() - META])
            out[-1] = self.version
            self.read[rank] = self.version
            state = pack_state(self.optimizer.state_dict(), out.device) if self.standby and rank == STANDBY else None
            out[-4] = state is not None
            return self.clock[rank] - min(self.clock), state

    def state_into(self, params, optimizer) -> None:
        """Hand the server's parameters and optimizer state back to the model (at detach)."""
        with self.lock:
            load_flat(params, flat_params(self.params))
            optimizer.load_state_dict(copy.deepcopy(self.optimizer.state_dict()))

    def state_dict(self) -> dict:
        """Parameters, optimizer state, version and clocks, as CPU copies (one consistent moment)."""
        with self.lock:
            return {"params": flat_params(self.params).cpu().clone(),
                    "optimizer": to_cpu(self.optimizer.state_dict()),
                    "version": self.version, "read": list(self.read), "clock": list(self.clock)}

    def load_state_dict(self, d: dict) -> None:
        """Restore `state_dict`'s output (the same parameter shapes; clocks only for the same world)."""
        with self.lock:
            load_flat(self.params, d["params"].to(self.params[0].device))
            self.optimizer.load_state_dict(copy.deepcopy(d["optimizer"]))
            self.version = int(d["version"])
            if len(d["clock"]) == len(self.clock):
                self.read, self.clock = list(d["read"]), list(d["clock"])
            else:  # another number of workers: every reader is up to date, clocks start level
                self.read = [self.version] * len(self.read)


class Serving:
    """The server thread on rank 0: answers every other worker's push or pull until all said `done`.

    Args:
        ctx: rank 0's WorkerContext (store, abort flag, the link to copy).
        server: the Server it serves.
        ns: the store key prefix of this attach (`signals.namespace`).
        codec: a WireCodec when gradients travel compressed, else None.
        grad, reply: tensors shaped as a gradient and as a reply (parameters + META).
    """

    def __init__(self, ctx, server: Server, ns: str, codec, grad: torch.Tensor, reply: torch.Tensor):
        self.ctx, self.server, self.ns, self.codec = ctx, server, ns, codec
        self.comm = ctx.fresh_comm()    # its own ledger: the server's bytes, reported apart
        self.inbox = codec.empty(grad.device) if codec else torch.zeros_like(grad)
        self.out = torch.zeros_like(reply)
        self.stop = threading.Event()
        self.error: Optional[str] = None
        self.thread = threading.Thread(target=self._run, name=f"lab-ps-{ns}", daemon=True)

    def start(self) -> "Serving":
        self.thread.start()
        return self

    def _run(self):
        affinity.float_thread()   # on any free core, not only rank 0's (lab.affinity)
        try:
            if self.ctx.device.type == "cuda":  # CUDA's current device is per thread
                torch.cuda.set_device(self.ctx.device)
            self.serve()
        except BaseException as e:  # the worker on rank 0 reports it at its next step
            self.error = f"{type(e).__name__}: {e}"
        finally:
            affinity.settle_thread()

    def serve(self) -> None:
        ctx, comm, srv, out = self.ctx, self.comm, self.server, self.out
        store = store_client(ctx, "server")
        decode = self.codec.decode if self.codec else (lambda t: t)
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
                comm.recv(self.inbox, src, tag=TAG)
                staleness = srv.push(src, decode(self.inbox))
            lag, state = srv.read_into(src, out)
            out[-3], out[-2] = staleness, lag
            comm.send(out, src, tag=TAG)
            if state is not None:   # the standby: the optimizer state of the same moment, its size first
                comm.send(torch.tensor([state.numel()], dtype=torch.int64, device=state.device), src, tag=TAG)
                comm.send(state, src, tag=TAG)
