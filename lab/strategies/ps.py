"""`ps`: a synchronous parameter server (chapter 05).

Rank 0 is the server (and also a worker). Each step every other worker pushes its flat gradient
to the server; the server sums them with its own, divides by the number of workers, applies the
optimizer and sends the new parameters back to each worker. The result equals `sync`, but the
server's link carries (n-1) gradients in and (n-1) parameter copies out every step, so its load
grows with the number of workers while a ring all-reduce costs each worker about 2 B.

Only the server's optimizer steps; `detach` broadcasts its parameters and optimizer state so
every worker leaves with the same state. The helpers below (flat parameters, broadcasting and
averaging state) are shared by `async`, `ssp` and `local`.
"""
from __future__ import annotations

import io
from typing import List

import torch

from ..compression.wire import codec_for
from . import strategy
from .base import StepInfo, Strategy
from .buckets import flat_grads, flat_params, load_flat, numel, set_grads

TAG = 11  # point-to-point tag of this strategy's messages (gloo keeps p2p and collectives apart)


# -- making every worker's state identical (what `detach` promises) -------------------------------
def broadcast_state(comm, params: List[torch.Tensor], optimizer: torch.optim.Optimizer, src: int = 0) -> None:
    """Give every worker `src`'s parameters and optimizer state (a collective: all ranks call it).

    The optimizer state travels serialised (other workers may not even have its buffers yet,
    e.g. a momentum buffer that only the server ever used), as bytes through `comm.broadcast`,
    so the ledger counts them.
    """
    if comm.world == 1:
        return
    dev = params[0].device
    flat = flat_params(params)
    comm.broadcast(flat, src)
    if comm.rank != src:
        load_flat(params, flat)
    if comm.rank == src:
        buf = io.BytesIO()
        torch.save(optimizer.state_dict(), buf)
        data = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8).to(dev)
        size = torch.tensor([data.numel()], dtype=torch.int64, device=dev)
    else:
        size = torch.zeros(1, dtype=torch.int64, device=dev)
    comm.broadcast(size, src)
    if comm.rank != src:
        data = torch.empty(int(size.item()), dtype=torch.uint8, device=dev)
    comm.broadcast(data, src)
    if comm.rank != src:
        # map to CPU: load_state_dict moves each buffer next to its parameter, but keeps Adam's
        # `step` counter where it is (on CPU unless capturable)
        state = torch.load(io.BytesIO(data.cpu().numpy().tobytes()), map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state)


def optimizer_buffers(optimizer: torch.optim.Optimizer) -> List[torch.Tensor]:
    """The optimizer's floating-point state tensors (momentum, Adam moments), in a fixed order."""
    out = []
    for g in optimizer.param_groups:
        for p in g["params"]:
            st = optimizer.state.get(p, {})
            for k in sorted(st):
                v = st[k]
                if k != "step" and torch.is_tensor(v) and v.is_floating_point():
                    out.append(v)
    return out


def average(comm, tensors: List[torch.Tensor]) -> None:
    """Average `tensors` over all workers in place (one ring all-reduce per dtype)."""
    if comm.world == 1 or not tensors:
        return
    by_dtype = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        comm.note_payload(flat.numel() * flat.element_size(), flat.numel() * 4)
        comm.all_reduce(flat)
        flat.div_(comm.world)
        load_flat(group, flat)


@strategy("ps")
class ParameterServer(Strategy):
    """Synchronous parameter server on rank 0: push gradients, average, pull parameters."""
    server = True  # gradients go point to point to a server (compressors: lab.compression.wire)

    def attach(self, model, optimizer):
        super().attach(model, optimizer)
        ps = self.params()
        self.grad = torch.zeros(numel(ps), dtype=ps[0].dtype, device=ps[0].device)
        self.buf = torch.zeros_like(self.grad)
        # with a compressor, gradients travel as packed bytes (lab.compression.wire)
        self.codec = codec_for(self.cfg, self.ctx, self.grad, self.name)
        self.inbox = self.codec.empty(self.grad.device) if self.codec else torch.zeros_like(self.grad)

    def step(self, step: int) -> StepInfo:
        ctx, comm, ps = self.ctx, self.ctx.comm, self.params()
        n = ctx.world
        flat_grads(ps, self.grad)
        mine = self.codec.encode(self.grad) if self.codec else self.grad
        comm.note_payload(mine.numel() * mine.element_size(), self.grad.numel() * 4)
        decode = self.codec.decode if self.codec else (lambda t: t)
        if n > 1:
            comm.barrier()  # waiting for the slowest worker is waiting, not the server's traffic
        if ctx.rank == 0:
            total = decode(mine).clone()
            for src in range(1, n):  # the server's inbound link: (n-1) gradients
                comm.recv(self.inbox, src, tag=TAG)
                total.add_(decode(self.inbox))
            total.div_(n)
            set_grads(ps, total)
            self.optimizer.step()
            flat_params(ps, self.buf)
            for dst in range(1, n):  # and outbound: (n-1) copies of the parameters
                comm.send(self.buf, dst, tag=TAG)
            lg = comm.ledger
            return StepInfo(staleness=0, extra={"server_bytes_sent": lg.bytes_sent, "server_bytes_recv": lg.bytes_recv})
        comm.send(mine, 0, tag=TAG)
        comm.recv(self.buf, 0, tag=TAG)
        load_flat(ps, self.buf)
        return StepInfo(staleness=0)

    def detach(self):
        broadcast_state(self.ctx.comm, self.params(), self.optimizer, src=0)
