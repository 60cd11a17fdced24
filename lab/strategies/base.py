"""The strategy protocol: what happens between `loss.backward()` and the next step.

The training loop (`lab.train.Trainer`) computes gradients into `p.grad`, then calls
`strategy.step(step)`. The strategy exchanges whatever it needs through `ctx.comm` (which times
and accounts every byte) and leaves the model's parameters updated. Strategies never touch
data, models' structure, records or the notebook.

Lifecycle (all workers call each method at the same step, so they may use collectives):
    attach(model, optimizer)  when the strategy starts or is switched to mid-run
    load_state_dict(d)        on resume only, right after attach, before the first step
    step(step) -> StepInfo    once per training step
    state_dict() -> dict      this worker's strategy state, at checkpoints (each rank its own piece)
    detach()                  when the run ends or switches away: afterwards every worker must hold
                              the same parameters and optimizer state, so any strategy can follow

What a strategy declares (class attributes, read instead of comparing names):
    kind           "gradients" (exchanges gradients: sync), "server" (gradients go to a parameter
                   server: ps, async, ssp), "parameters" (exchanges parameters: local)
    equals_sync    the option values under which it equals `sync` step for step (plain SGD,
                   float64), e.g. {"period": 1}; {} when always; None when never
    deterministic  the same seeds give the same result (False where thread timing decides)
    traffic(rank, world, param_bytes)  the bytes it sends and receives per step uncompressed
    hosted_server  a parameter server runs as a thread beside rank 0's worker with a ledger of its
                   own (async, ssp): its bytes (`server_bytes_*` in rank 0's records) are a node of
                   their own on the wire, not part of any worker's. Under `ps` the server *is* rank
                   0's worker, so its bytes are already in that worker's ledger.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, Optional, Tuple

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
    local_clip: float = 0.0               # the trainer clips gradients after backward (> 0): nothing may leave before
    compression: Any = None               # lab.compression.owner.Compression: compressor + residuals, made by the trainer
    abort_reason: Optional[Callable[[], Optional[str]]] = None  # set by lab.worker: why the run was aborted
    cache: Dict[str, Any] = field(default_factory=dict)  # what outlives one strategy: store clients, attach counts
    elastic: bool = False                 # the run survives a worker's death (lab.elastic): e.g. ps keeps a standby
    interrupt: Optional[Callable[[], None]] = None  # set by lab.elastic: raises when the workers changed (store waits give way)

    def aborted(self) -> Optional[str]:
        """Why the run was aborted (a worker died or failed), or None while it goes on."""
        return self.abort_reason() if self.abort_reason is not None else None

    def fresh_comm(self):
        """A new Comm on the same group and link, with its own ledger (e.g. for a server thread)."""
        return self.comm.fresh()


KINDS = ("gradients", "server", "parameters")


class Strategy:
    """Base class; subclasses register with `@strategy("name")` in `lab.strategies`."""
    name = "base"
    kind: ClassVar[str] = ""                   # one of KINDS
    equals_sync: ClassVar[Optional[dict]] = None
    deterministic: ClassVar[bool] = True
    hosted_server: ClassVar[bool] = False

    @dataclass
    class Options:
        """The strategy's own knobs (none here; subclasses declare theirs)."""

    def __init__(self, cfg, ctx: WorkerContext):
        self.cfg, self.ctx = cfg, ctx
        self.model: Optional[nn.Module] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer

    def step(self, step: int) -> StepInfo:
        raise NotImplementedError

    # whether each worker goes at its own pace, nothing inside its step waiting for another's steps
    # (async): a change that re-forms the group then reaches each worker at its own next step
    # (lab.membership); otherwise at one step for all, since a worker waiting inside a step (a
    # collective, ssp's bound) for another that already re-forms would wait for ever
    own_pace = False

    def detach(self) -> None:
        pass

    def finish(self) -> None:
        """This worker did all its steps; the others may not have (an elastic run of an
        `own_pace` strategy holds there, `lab.elastic.Guard.hold`): say so without waiting. `detach` follows."""

    def finished(self) -> bool:
        """After `finish`: whether `detach` would now go through without waiting for other workers' steps."""
        return True

    def abandon(self) -> None:
        """Let go after the group broke, without talking to the others (an elastic run re-forms it,
        `lab.elastic`): drop hooks, stop threads. The state stays where it is."""

    def unreported(self) -> dict:
        """Counters this worker accrued after its last step's record (e.g. a parameter server's
        bytes while it drained the other workers' last pushes). Called after `detach`; the
        trainer puts them in the next record, or in the run's `after_last_step` at the end."""
        return {}

    def state_dict(self) -> dict:
        """This worker's strategy state beyond its model and optimizer (a server's, counters),
        as CPU tensors and plain values; {} when there is none. Called after a step."""
        return {}

    def load_state_dict(self, d: dict) -> None:
        """Restore what `state_dict` returned on this rank (on resume, after `attach`, before any step)."""

    def traffic(self, rank: int, world: int, param_bytes: int, itemsize: int = 4) -> Optional[Tuple[float, float]]:
        """(bytes sent, bytes received) per step by `rank` with no compressor, for parameters of
        `param_bytes` bytes in elements of `itemsize` bytes; None where it varies from step to step."""
        return None

    def params(self):
        return [p for p in self.model.parameters() if p.requires_grad]
