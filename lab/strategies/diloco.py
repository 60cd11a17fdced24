"""`diloco`: DiLoCo, distributed low-communication training (Douillard et al. 2023) (chapter 08).

Local SGD with a second optimizer on top. Each worker runs `H = period` steps of the run's own
optimizer (the *inner* one, e.g. Adam) from a shared starting point, the *anchor*; then the
workers average their **pseudo-gradient** `anchor - local parameters` with one all-reduce, and an
*outer* SGD with Nesterov momentum applies it to the anchor:

    delta  = mean over workers of (anchor - x_i)
    buf    = mu * buf + delta
    anchor = anchor - outer_lr * (delta + mu * buf)        (every worker restarts from the anchor)

The paper's outer settings are outer_lr 0.7 and mu 0.9. Communication is one all-reduce of the
parameters every H steps (about H times fewer bytes than `sync`); the outer momentum lets a long
inner phase still move far in the direction the workers agree on. With outer_lr 1 and mu 0 the
anchor is the workers' average: `local`; with H = 1 as well, and plain SGD, it is `sync`.

Each worker keeps its own inner optimizer state between averagings (as in the paper). The anchor,
the outer momentum and the inner step count are `state_dict` (a resumed run goes on exactly).
`detach` finishes a pending outer step and averages the inner optimizer state, so every worker
leaves with the same parameters and optimizer state.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..knobs import knob
from . import strategy
from .arrivals import Arrivals
from .averaging import average, optimizer_buffers
from .base import StepInfo, Strategy
from .buckets import flat_params, load_flat
from .local import LocalSGD

PERIOD = {f.name: f for f in dataclasses.fields(LocalSGD.Options)}["period"]  # H: local's knob, shared


@strategy("diloco")
class DiLoCo(Strategy):
    """H inner steps, then an outer Nesterov step on the averaged pseudo-gradient."""
    kind = "parameters"
    equals_sync = {"period": 1, "outer_lr": 1.0, "outer_momentum": 0.0}

    @dataclass
    class Options:
        period: int = dataclasses.field(default=PERIOD.default, metadata=PERIOD.metadata)
        outer_lr: float = knob(0.7, "diloco: the outer optimizer's learning rate on the averaged pseudo-gradient",
                               range="(0, 10]", live=True, ui=(0.1, 2))
        outer_momentum: float = knob(0.9, "diloco: the outer optimizer's Nesterov momentum", range="[0, 1)",
                                     live=True)

    def attach(self, model, optimizer):
        super().attach(model, optimizer)
        self.anchor = flat_params(self.params())   # the same on every worker (detach's promise)
        self.buf = torch.zeros_like(self.anchor)   # outer momentum
        self.inner = 0                             # inner steps since the last outer step
        self.state_synced = True                   # every worker holds the same inner optimizer state
        self.arrivals = Arrivals(self.ctx) if self.ctx.world > 1 else None  # (every worker attaches here)

    def step(self, step: int) -> StepInfo:
        drift = self.inner
        self.optimizer.step()
        self.inner += 1
        self.state_synced = False
        outer = self.inner >= self.cfg.period
        if outer:
            self._outer_step()
        return StepInfo(staleness=drift, extra={"averaged": outer})

    def _outer_step(self) -> None:
        comm, ps = self.ctx.comm, self.params()
        delta = self.anchor - flat_params(ps)      # this worker's pseudo-gradient
        average(comm, [delta], self.arrivals)  # waiting for the slowest worker is waiting, not communication
        mu, lr = float(self.cfg.outer_momentum), float(self.cfg.outer_lr)
        self.buf.mul_(mu).add_(delta)
        self.anchor.sub_(delta.add_(self.buf, alpha=mu), alpha=lr)  # Nesterov, as torch.optim.SGD
        load_flat(ps, self.anchor)
        self.inner = 0

    def detach(self):
        if self.inner:
            self._outer_step()
        if not self.state_synced:
            average(self.ctx.comm, optimizer_buffers(self.optimizer))
            self.state_synced = True

    def state_dict(self) -> dict:
        return {"anchor": self.anchor.clone(), "buf": self.buf.clone(), "inner": self.inner,
                "state_synced": self.state_synced}

    def load_state_dict(self, d: dict) -> None:
        if "anchor" in d:
            self.anchor.copy_(d["anchor"])
            self.buf.copy_(d["buf"])
        self.inner = int(d.get("inner", 0))
        self.state_synced = bool(d.get("state_synced", True))

    def traffic(self, rank, world, param_bytes, itemsize=4):
        """2 (n-1)/n B every `period` steps, nothing in between: it varies (None), except H = 1
        (B: the parameters plus one arrival slot per worker, `arrivals`)."""
        if self.cfg.period == 1:
            b = 2 * (world - 1) / world * (param_bytes + world * itemsize)
            return b, b
        return None
