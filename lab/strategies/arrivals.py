"""Who came last to a collective, told by the collective itself: waiting split from communication
without a barrier.

Each worker's arrival travels with the collective's payload (no extra message): in `n` spare slots
of a summed all-reduce (`stamp`: its own slot, zeros elsewhere; the sum holds every arrival), or
as a stamp in a gathered payload (`stamp_gathered`: every worker gets every stamp). Afterwards
every worker knows who came last: the time it spent blocked until then is waiting (`wait_s`),
the rest of the collective communication (`comm_s`). A barrier before the collective would say
the same at the price of one more round trip every step, and would count the spread of its own
exits as communication. Used by `sync`'s gradient buckets and compressed gathers (`gradients.py`,
`lab.compression.exchange`) and by the parameter averaging of `local` and `diloco`
(`averaging.average`).
"""
from __future__ import annotations

import time

import torch
import torch.distributed as dist


class Arrivals:
    """Arrival stamps on one clock origin shared by the workers (the same host's workers share the
    clock exactly). The origin moves to each collective's last arrival, the same number on every
    worker, so stamps stay as small as the time between two collectives and a float32 slot holds
    them to a microsecond however long the run (counted from the start, 2^-24 of an hour is 0.2 ms)."""

    def __init__(self, ctx):
        # a collective on the control plane (a CPU clock: an NCCL data group refuses CPU tensors):
        # every worker constructs its Arrivals at the same point (a strategy's attach)
        self.ctx = ctx
        origin = torch.tensor([time.time()], dtype=torch.float64, device="cpu")
        ctx.comm.control.all_reduce(origin, op=dist.ReduceOp.MIN)
        self.origin = origin.item()

    def now(self) -> float:
        """This worker's arrival: seconds since the shared origin, read once its device finished the
        work queued so far (a CUDA worker's compute is its kernels', as `comm_s` is timed)."""
        self.ctx.comm.clock.now()
        return time.time() - self.origin

    def stamp(self, slots: torch.Tensor) -> None:
        """Before a summed collective: this worker's arrival in its own slot, zeros elsewhere."""
        slots.zero_()[self.ctx.rank] = self.now()

    def split(self, slots: torch.Tensor, collective_s: float, scale: float = 1.0) -> float:
        """After it (`slots` summed over the workers, times `scale` to undo an average): `settle`."""
        return self.settle(slots.double().cpu() * scale, collective_s)

    def stamp_gathered(self, device) -> torch.Tensor:
        """Before a gathered collective: this worker's arrival as a tensor of its own (float64, 8
        bytes) to travel with its payload."""
        return torch.tensor([self.now()], dtype=torch.float64, device=device)

    def split_gathered(self, stamps, collective_s: float) -> float:
        """After it: every rank's `stamp_gathered` tensor, by rank: `settle`."""
        return self.settle(torch.cat(list(stamps)).double().cpu(), collective_s)

    def settle(self, arrivals: torch.Tensor, collective_s: float) -> float:
        """Given every worker's arrival (by rank, the same on every worker), move the time this
        worker waited for the last one, at most the collective's, from comm_s to wait_s, and count
        the next stamps from that last arrival. Returns the seconds moved."""
        last = float(arrivals.max())
        waited = min(max(last - float(arrivals[self.ctx.rank]), 0.0), collective_s)
        lg = self.ctx.comm.ledger
        lg.comm_s -= waited
        lg.wait_s += waited
        self.origin += last
        return waited
