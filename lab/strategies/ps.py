"""`ps`: a synchronous parameter server (chapter 05).

Rank 0 is the server (and also a worker). Each step every other worker pushes its flat gradient
to the server; the server sums them with its own, divides by the number of workers, applies the
optimizer and sends the new parameters back to each worker. The result equals `sync`, but the
server's link carries (n-1) gradients in and (n-1) parameter copies out every step, so its load
grows with the number of workers while a ring all-reduce costs each worker about 2 B.

Only the server's optimizer steps; `detach` broadcasts its parameters and optimizer state so
every worker leaves with the same state (`lab.strategies.averaging.broadcast_state`).

A hot standby (elastic runs, `lab.elastic`): rank 1 is sent the averaged gradient instead of the
new parameters (the same bytes) and applies the same optimizer step itself, so it holds the
server's parameters *and* optimizer state bit for bit (the same operations on the same numbers;
on the same kind of hardware). If the server dies, the standby becomes the new rank 0 with
nothing lost: the server's state moves to a survivor, as replicated parameter servers do.
"""
from __future__ import annotations

import torch

from . import strategy
from .averaging import broadcast_state
from .base import StepInfo, Strategy
from .buckets import flat_grads, flat_params, load_flat, numel, set_grads

TAG = 11  # point-to-point tag of this strategy's messages (gloo keeps p2p and collectives apart)


@strategy("ps")
class ParameterServer(Strategy):
    """Synchronous parameter server on rank 0: push gradients, average, pull parameters."""
    kind = "server"  # gradients go point to point to a server (compressors: lab.compression.wire)
    equals_sync = {}

    def traffic(self, rank, world, param_bytes, itemsize=4):
        """The server (rank 0) takes in n-1 gradients and sends n-1 copies of the parameters."""
        b = (world - 1) * param_bytes if rank == 0 else param_bytes
        return b, b

    def attach(self, model, optimizer):
        super().attach(model, optimizer)
        ps = self.params()
        self.grad = torch.zeros(numel(ps), dtype=ps[0].dtype, device=ps[0].device)
        self.buf = torch.zeros_like(self.grad)
        # with a compressor, gradients travel as packed bytes (lab.compression.wire)
        self.codec = self.ctx.compression.wire(self.grad, self.name)
        self.inbox = self.codec.empty(self.grad.device) if self.codec else torch.zeros_like(self.grad)
        self.standby = self.ctx.elastic and self.ctx.world > 1   # rank 1 mirrors the server (elastic runs)
        self.holds_server = self.ctx.rank == 0 or (self.ctx.rank == 1 and self.standby)   # its optimizer state

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
            # and outbound: (n-1) copies of the parameters (the standby: the gradient), the standby's
            # last, so it is never a step ahead of a survivor when the server dies mid-way (the
            # survivors go back to the standby's step, lab.elastic: it holds the server's state there)
            for dst in list(range(2, n)) + ([1] if n > 1 else []):
                comm.send(total if dst == 1 and self.standby else self.buf, dst, tag=TAG)
            lg = comm.ledger
            return StepInfo(staleness=0, extra={"server_bytes_sent": lg.bytes_sent, "server_bytes_recv": lg.bytes_recv})
        comm.send(mine, 0, tag=TAG)
        comm.recv(self.buf, 0, tag=TAG)
        if ctx.rank == 1 and self.standby:  # the server's step, done here too: the same state
            set_grads(ps, self.buf)
            self.optimizer.step()
        else:
            load_flat(ps, self.buf)
        return StepInfo(staleness=0)

    def detach(self):
        broadcast_state(self.ctx.comm, self.params(), self.optimizer, src=0)
