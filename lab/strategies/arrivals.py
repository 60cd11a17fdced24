"""Who came last to a collective, told by the collective itself: waiting split from communication
without a barrier.

Each worker writes the moment it arrived into its own slot of `n` spare slots that travel with a
summed collective's payload (an all-reduce: no extra message), so afterwards every worker holds
every arrival. The time a worker then spent blocked until the last one arrived is waiting
(`wait_s`), the rest of the collective communication (`comm_s`). A barrier before the collective
would say the same at the price of one more round trip, and would count the spread of its own
exits as communication. Used by `sync`'s gradient buckets (`gradients.py`) and by the parameter
averaging of `local` and `diloco` (`averaging.average`).
"""
from __future__ import annotations

import time

import torch
import torch.distributed as dist


class Arrivals:
    """Arrival stamps on one clock origin shared by the workers (float32 slots hold seconds since
    it to ~10 us for hours; the same host's workers share the clock exactly)."""

    def __init__(self, ctx):
        # a collective on the control plane (a CPU clock: an NCCL data group refuses CPU tensors):
        # every worker constructs its Arrivals at the same point (a strategy's attach)
        self.ctx = ctx
        origin = torch.tensor([time.time()], dtype=torch.float64, device="cpu")
        ctx.comm.control.all_reduce(origin, op=dist.ReduceOp.MIN)
        self.origin = origin.item()

    def stamp(self, slots: torch.Tensor) -> None:
        """Before the collective: this worker's arrival in its own slot, zeros elsewhere."""
        slots.zero_()[self.ctx.rank] = time.time() - self.origin

    def split(self, slots: torch.Tensor, collective_s: float, scale: float = 1.0) -> float:
        """After it (`slots` summed over the workers, times `scale` to undo an average): move the
        time this worker waited for the last arrival, at most the collective's, from comm_s to
        wait_s. Returns the seconds moved."""
        arrivals = slots.double().cpu() * scale
        waited = float(arrivals.max() - arrivals[self.ctx.rank])
        waited = min(max(waited, 0.0), collective_s)
        lg = self.ctx.comm.ledger
        lg.comm_s -= waited
        lg.wait_s += waited
        return waited
