"""`ssp`: stale synchronous parallel, bounded staleness `s` (chapter 06).

The asynchronous parameter server of `async`, plus one rule: a worker may be at most `s` steps
ahead of the slowest. A worker's clock is the number of gradients it has pushed. Two gates,
both waiting on keys in the cluster's store (counted as `wait_s`):

- before reading the parameters for its step k, a worker needs every worker's step k-s-1
  gradient applied (clock >= k-s). The server's reply to a push says how far the worker's
  clock is ahead of the slowest; within `s` it goes on at once, else it waits for the
  laggards' clocks and pulls fresh parameters;
- before pushing its step k, it needs every worker to have read its parameters for step k-s,
  so nobody computes on parameters more than `s` steps "from the future" either.

So the recorded `staleness` is in steps (how far the parameters a step computed on lag behind
the worker's own clock, from the slowest worker's point of view) and never exceeds `s`. With
`s = 0` both gates close every step: each step's parameters hold exactly every earlier step's
updates, which is `sync` (exactly so with plain SGD). With a huge `s` nobody waits: `async`.
`staleness_updates` keeps async's measure (server updates between read and push).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..knobs import knob
from . import strategy
from .async_ps import AsyncPS
from .base import StepInfo
from .signals import wait_keys


@strategy("ssp")
class SSP(AsyncPS):
    """Asynchronous parameter server whose fastest worker runs at most `cfg.staleness` steps ahead."""
    equals_sync = {"staleness": 0}
    deterministic = False  # with s > 0 thread timing decides who reads what
    own_pace = False       # a step may wait for the slowest worker's clock (its bound)

    @dataclass
    class Options:
        staleness: int = knob(2, "steps a worker may run ahead of the slowest (s)", range=(0, None), live=True,
                              ui=(0, 32))

    def gate(self, kind: str, clock: int) -> None:
        """Wait until every other worker has passed `clock` of `kind` ("c": pushed, "r": read)."""
        ctx = self.ctx
        keys = [f"{self.ns}/{kind}/{r}/{clock}" for r in range(ctx.world) if r != ctx.rank]
        if clock >= 1 and keys:
            with ctx.comm.waiting():
                wait_keys(self.store, keys, ctx)

    def mark(self, kind: str, clock: int) -> None:
        """Tell the others this worker passed `clock` of `kind`."""
        rank, s = self.ctx.rank, self.cfg.staleness
        self.store.set(f"{self.ns}/{kind}/{rank}/{clock}", "")
        # nobody can wait for a mark this old any more: a worker is at most s+1 pushes ahead of
        # the slowest, and waits for marks at most s behind its own clock
        old = clock - 2 * s - 2
        if old >= 1 and s <= 1000:
            self.store.delete_key(f"{self.ns}/{kind}/{rank}/{old}")

    def before_push(self) -> None:
        self.gate("r", self.steps - self.cfg.staleness)  # everybody has read for step k - s

    def after_push(self, lag: int) -> int:
        s, k1 = self.cfg.staleness, self.steps  # k1 = k + 1: this worker's clock after the push
        self.mark("c", k1)
        if lag > s:  # too far ahead: wait for every clock to reach k+1-s, then read again
            self.gate("c", k1 - s)
            _, lag = self.exchange(push=False)
        self.mark("r", k1)
        return lag

    def traffic(self, rank, world, param_bytes, itemsize=4):
        """As `async`, plus a second reply whenever a worker ran too far ahead: it varies (None)."""
        return (0, 0) if rank == 0 or world == 1 else None

    def step_info(self, staleness_updates: int, used_lag: int) -> StepInfo:
        # staleness in steps: how far the parameters this gradient used lagged (never above s)
        return StepInfo(staleness=used_lag, extra={"staleness_updates": staleness_updates, "clock_lag": used_lag,
                                                   **self.server_bytes()})
