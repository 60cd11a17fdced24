"""`gossip`: decentralised SGD on a ring, D-PSGD (Lian et al. 2017) (chapter 08).

No server and no all-reduce: after its own optimizer step each worker swaps its parameters with
its two ring neighbours only (rank-1 and rank+1, modulo n) and keeps the mix

    x_i <- w x_i + (1 - w) / 2 (x_{i-1} + x_{i+1})        w = `self_weight`

So each worker sends 2 B and receives 2 B per step (B = the parameters' bytes) whatever the
number of workers, where a ring all-reduce costs 2 (n-1)/n B: that grows towards 2 B, this stays
put, and no step waits for any worker but the two neighbours. The price: replicas agree only
on average; information crosses the ring in about n/2 steps, so they drift apart more as n grows.

With 2 workers both neighbours are the same worker (one message each way) and w = 1/2 makes
every step an exact average: with plain SGD that is `sync`. `detach` averages parameters and
optimizer state over all workers (one all-reduce), so every worker leaves with the same state.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import records
from ..knobs import knob
from . import strategy
from .averaging import average, optimizer_buffers
from .base import StepInfo, Strategy
from .buckets import flat_params, load_flat, numel

TAG = 31  # point-to-point tag of this strategy's messages

records.declare("consensus_gap", "", "lower",
                "gossip: RMS distance between this worker's parameters and its neighbours' mean, before mixing")


def neighbours(rank: int, world: int) -> list:
    """The distinct ring neighbours of `rank` (one when world == 2, none when alone)."""
    return sorted({(rank - 1) % world, (rank + 1) % world} - {rank})


@strategy("gossip")
class Gossip(Strategy):
    """Local step, then mix parameters with the two ring neighbours (non-blocking sends and receives)."""
    kind = "parameters"
    equals_sync = {"self_weight": 0.5}  # on 2 workers: each step averages both replicas exactly

    @dataclass
    class Options:
        self_weight: float = knob(1 / 3, "gossip: weight of a worker's own parameters in each mix (its two "
                                  "ring neighbours share the rest)", range="[0, 1)", live=True)

    def attach(self, model, optimizer):
        super().attach(model, optimizer)
        ps = self.params()
        self.peers = neighbours(self.ctx.rank, self.ctx.world)
        self.mine = torch.zeros(numel(ps), dtype=ps[0].dtype, device=ps[0].device)
        self.inbox = [torch.zeros_like(self.mine) for _ in self.peers]

    def step(self, step: int) -> StepInfo:
        self.optimizer.step()
        if not self.peers:
            return StepInfo(staleness=0)
        comm, ps = self.ctx.comm, self.params()
        flat_params(ps, self.mine)
        # post every receive and send before waiting on any, so no pair of workers deadlocks
        pending = [comm.irecv(buf, src, tag=TAG) for buf, src in zip(self.inbox, self.peers)]
        pending += [comm.isend(self.mine, dst, tag=TAG) for dst in self.peers]
        comm.note_payload(len(self.peers) * self.mine.numel() * self.mine.element_size(),
                          len(self.peers) * self.mine.numel() * 4)
        for p in pending:
            p.wait()
        others = torch.stack(self.inbox).mean(0)  # the neighbours share 1 - w equally
        gap = (self.mine - others).pow(2).mean().sqrt().item()
        w = float(self.cfg.self_weight)
        load_flat(ps, self.mine.mul_(w).add_(others, alpha=1 - w))
        return StepInfo(staleness=0, extra={"consensus_gap": gap})

    def traffic(self, rank, world, param_bytes, itemsize=4):
        """B to each distinct neighbour and B from each: 2 B each way for n >= 3, whatever n."""
        b = len(neighbours(rank, world)) * param_bytes
        return b, b

    def detach(self):
        comm = self.ctx.comm
        if comm.world > 1:
            comm.barrier()  # waiting for the slowest worker is waiting, not communication
            average(comm, self.params())  # the consensus every worker leaves with
            average(comm, optimizer_buffers(self.optimizer))
