"""`local`: local SGD / model averaging, and federated averaging on skewed shards (chapter 08).

Each worker trains on its own for `H = cfg.period` steps with its own optimizer, then all
workers average their parameters with one ring all-reduce (and, with `average_optimizer`, their
optimizer state too). Communication drops by a factor H against `sync`; the price is that the
replicas drift apart between averagings, more so when each worker's data differs. With
`data.shard = "dirichlet"` (label-skewed shards, `alpha`) this is federated averaging (FedAvg).

With H = 1 and plain SGD it is exactly `sync`: averaging parameters after one step each is
averaging the gradients. `staleness` records how many local steps the parameters a step used
have drifted since the last averaging. `detach` averages parameters and optimizer state, so
every worker leaves with the same state.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..knobs import knob
from . import strategy
from .base import StepInfo, Strategy
from .arrivals import Arrivals
from .averaging import average, optimizer_buffers


@strategy("local")
class LocalSGD(Strategy):
    """H local optimizer steps, then parameters (optionally optimizer state) averaged by all-reduce."""
    kind = "parameters"
    equals_sync = {"period": 1}

    @dataclass
    class Options:
        period: int = knob(8, "local steps between averagings (H)", range=(1, None), live=True, ui=(1, 64))
        average_optimizer: bool = knob(False, "also average the optimizer state at each averaging", live=True)

    def attach(self, model, optimizer):
        super().attach(model, optimizer)
        self.local = 0          # local steps since the last averaging (0: parameters agree)
        self.state_synced = True  # every worker holds the same optimizer state
        self.arrivals = Arrivals(self.ctx) if self.ctx.world > 1 else None  # (every worker attaches here)

    def step(self, step: int) -> StepInfo:
        drift = self.local
        self.optimizer.step()
        self.local += 1
        self.state_synced = False
        averaged = self.local >= self.cfg.period
        if averaged:
            self._average(self.cfg.average_optimizer)
        return StepInfo(staleness=drift, extra={"averaged": averaged})

    def state_dict(self) -> dict:
        return {"local": self.local, "state_synced": self.state_synced}

    def load_state_dict(self, d: dict) -> None:
        self.local = int(d.get("local", 0))
        self.state_synced = bool(d.get("state_synced", True))

    def traffic(self, rank, world, param_bytes, itemsize=4):
        """2 (n-1)/n B every `period` steps, nothing in between: it varies (None), except H = 1
        (B: the parameters plus one arrival slot per worker, `arrivals`)."""
        if self.cfg.period == 1 and not self.cfg.average_optimizer:
            b = 2 * (world - 1) / world * (param_bytes + world * itemsize)
            return b, b
        return None

    def _average(self, optimizer_too: bool, params_too: bool = True) -> None:
        # the first average carries each worker's arrival: waiting for the slowest is waiting, not communication
        comm, arrivals = self.ctx.comm, self.arrivals
        if params_too:
            average(comm, self.params(), arrivals)
            self.local, arrivals = 0, None
        if optimizer_too:
            average(comm, optimizer_buffers(self.optimizer), arrivals)
            self.state_synced = True

    def detach(self):
        if self.local or not self.state_synced:
            self._average(True, params_too=self.local > 0)
