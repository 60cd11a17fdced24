"""`ssp`: stale synchronous parallel, bounded staleness `s` (chapter 06).

The asynchronous parameter server of `async`, plus one rule: a worker may be at most `s` steps
ahead of the slowest. Each worker's clock is the number of gradients it has pushed; after
pushing, a worker that would start step k+1 needs every worker's clock to be at least k+1-s. If
the parameters the server sent back already include that many steps from everyone (the server
tells: the reply carries the worker's clock lag behind the slowest), it goes on at once;
otherwise it waits, counted as `wait_s`, until the laggards' clocks appear in the cluster's
store, then pulls fresh parameters.

So the recorded `staleness` is in steps: how far the parameters a step computed on lag behind
the worker's own clock, from the slowest worker's point of view. It never exceeds `s`. With
`s = 0` every step waits for everyone, which is `sync` (exactly, with plain SGD); with a huge
`s` nobody ever waits, which is `async`. `staleness_updates` keeps async's measure (server
updates between read and push) for comparison.
"""
from __future__ import annotations

from . import strategy
from .async_ps import AsyncPS, wait_keys
from .base import StepInfo


@strategy("ssp")
class SSP(AsyncPS):
    """Asynchronous parameter server whose fastest worker runs at most `cfg.staleness` steps ahead."""

    def step(self, step: int) -> StepInfo:
        ctx, s = self.ctx, self.cfg.staleness
        used_lag = self.next_lag  # the parameters this step's gradient was computed on
        staleness_updates, lag = self._exchange(push=True)
        self.steps += 1
        clock = self.steps
        self.store.set(f"{self.ns}/c/{ctx.rank}/{clock}", "")
        old = clock - 2 * s - 2  # no worker can wait for a clock this old again (see the bound below)
        if old >= 1 and s <= 1000:
            self.store.delete_key(f"{self.ns}/c/{ctx.rank}/{old}")
        if lag > s:
            # too far ahead of the slowest: wait for everyone to reach clock - s, then re-read
            target = clock - s
            with ctx.comm.waiting():
                wait_keys(self.store, [f"{self.ns}/c/{r}/{target}" for r in range(ctx.world)], ctx)
            _, lag = self._exchange(push=False)
        self.next_lag = lag
        return StepInfo(staleness=used_lag, extra={"staleness_updates": staleness_updates, "clock_lag": used_lag,
                                                   **self._server_bytes()})
