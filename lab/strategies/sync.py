"""`sync`: synchronous data parallelism (chapter 04).

After backward, every worker's gradients are flattened into buckets, summed by a ring
all-reduce through torch.distributed, divided by the number of workers, and every worker applies
the same optimizer update, so the replicas never diverge. With a compressor (lab.compression)
each bucket travels compressed instead.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..knobs import knob
from . import strategy
from .base import Strategy, StepInfo
from .gradients import GradientAverager


@strategy("sync")
class Sync(Strategy):
    kind = "gradients"
    equals_sync = {}

    @dataclass
    class Options:
        bucket_mb: float = knob(25.0, "gradient bucket size for the all-reduce, in MB", range="(0, inf)", live=True,
                                ui=(1, 100))
        overlap: bool = knob(True, "start each bucket's all-reduce while backward still runs (as DDP; with two "
                                   "buckets or more)", live=True)

    def attach(self, model, optimizer):
        super().attach(model, optimizer)
        self.averager = GradientAverager(self.params(), self.cfg, self.ctx)

    def step(self, step: int) -> StepInfo:
        self.averager.average()  # also splits waiting for the slowest worker from communication
        self.optimizer.step()
        return StepInfo(staleness=0)

    def detach(self):
        self.averager.close()  # its gradient hooks go with it

    def abandon(self):
        self.averager.close()

    def traffic(self, rank, world, param_bytes, itemsize=4):
        """A ring all-reduce of the gradients plus one arrival-time slot per worker (gradients.py)."""
        b = 2 * (world - 1) / world * (param_bytes + (world * itemsize if world > 1 else 0))
        return b, b
