"""The strategy protocol: what happens between `loss.backward()` and the next step.

The training loop (`lab.train.Trainer`) computes gradients into `p.grad`, then calls
`strategy.step(step)`. The strategy exchanges whatever it needs through `ctx.comm` (which times
and accounts every byte) and leaves the model's parameters updated. Strategies never touch
data, models' structure, records or the notebook.

Lifecycle (all workers call each method at the same step, so they may use collectives):
    attach(model, optimizer)  when the strategy starts or is switched to mid-run
    step(step) -> StepInfo    once per training step
    detach()                  when the run ends or switches away: afterwards every worker must hold
                              the same parameters and optimizer state, so any strategy can follow
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch
from torch import nn


@dataclass
class StepInfo:
    """What a strategy reports about one step, beyond the comm ledger."""
    staleness: Optional[float] = None     # server updates since the parameters used were read
    applied: bool = True                  # did this worker's update reach the model this step
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkerContext:
    """What a strategy may use on its worker."""
    rank: int
    world: int
    device: torch.device
    comm: Any                             # lab.comm.Comm
    store: Any = None                     # a torch.distributed Store shared by the workers (key/value)
    group: Any = None                     # the process group
    run_id: str = ""
    slowdown: float = 1.0                 # this worker's current slow-down factor
    memory: Any = None                    # compression residuals (error feedback), kept across switches


class Strategy:
    """Base class; subclasses register with `@strategy("name")` in `lab.strategies`."""
    name = "base"

    def __init__(self, cfg, ctx: WorkerContext):
        self.cfg, self.ctx = cfg, ctx
        self.model: Optional[nn.Module] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer

    def step(self, step: int) -> StepInfo:
        raise NotImplementedError

    def detach(self) -> None:
        pass

    def unreported(self) -> dict:
        """Counters this worker accrued after its last step's record (e.g. a parameter server's
        bytes while it drained the other workers' last pushes). Called after `detach`; the
        trainer puts them in the next record, or in the run's `after_last_step` at the end."""
        return {}

    def params(self):
        return [p for p in self.model.parameters() if p.requires_grad]
