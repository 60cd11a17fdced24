"""`sync`: synchronous data parallelism (chapter 04).

After backward, every worker's gradients are flattened into buckets, summed by a ring
all-reduce through torch.distributed, divided by the number of workers, and every worker applies
the same optimizer update, so the replicas never diverge. With a compressor (lab.compression)
each bucket travels compressed instead.
"""
from __future__ import annotations

from . import strategy
from .base import Strategy, StepInfo
from .gradients import GradientAverager


@strategy("sync")
class Sync(Strategy):
    def attach(self, model, optimizer):
        super().attach(model, optimizer)
        self.averager = GradientAverager(self.params(), self.cfg, self.ctx)

    def step(self, step: int) -> StepInfo:
        self.averager.average()  # also splits waiting for the slowest worker from communication
        self.optimizer.step()
        return StepInfo(staleness=0)
