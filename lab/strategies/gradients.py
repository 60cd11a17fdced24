"""Averaging gradients across workers, compressed or not: what `sync` (and friends) call after backward.

Without compression the gradients travel in flat buckets (few large all-reduces, as DDP does),
and the first bucket carries one spare slot per worker holding the moment that worker arrived
at the all-reduce (`arrivals.Arrivals`, as `local`'s and `diloco`'s averaging do): afterwards
every worker knows who came last, so the time it spent blocked waiting for the slowest is split
from communication without an extra barrier (a barrier per step is one more round trip every
step). Compressed exchanges split it the same way: a gathered payload carries its worker's
arrival stamp (`lab.compression.exchange`); compressors that sum or run several rounds wait at
a barrier first.
With a compressor (chapter 07) they go through `lab.compression.exchange`, per layer
(`scope="layer"`: each parameter's gradient compressed under its own name, so top-k and PowerSGD
see the layer's shape, and a bucket's payloads travel together: `exchange_many`) or as one flat
tensor per bucket (`scope="global"`). Error-feedback residuals
live in the worker's compression owner (`ctx.compression`, lab.compression.owner), which
outlives strategy and compressor switches.
"""
from __future__ import annotations

from .arrivals import Arrivals
from .buckets import Buckets, bucket_groups
from .overlap import Overlap


class GradientAverager:
    """`average()` replaces every parameter's .grad by the average over workers."""

    def __init__(self, params, cfg, ctx):
        self.params, self.cfg, self.ctx = list(params), cfg, ctx
        self.compression = ctx.compression  # the worker's compressor + memory (made by the trainer)
        identity = self.compression.identity
        self.per_layer = not identity and cfg.compression.scope == "layer"
        self.timed = identity and ctx.world > 1  # arrival times ride in the first bucket
        self.buckets = None if self.per_layer else Buckets(self.params, cfg.bucket_mb, ctx.world if self.timed else 0)
        if self.per_layer:  # parameter indices, cut into buckets as the flat path cuts them
            index = {id(p): i for i, p in enumerate(self.params)}
            self.layer_buckets = [[index[id(p)] for p in g] for g in bucket_groups(self.params, cfg.bucket_mb)]
        self.arrivals = Arrivals(ctx) if ctx.world > 1 else None  # (a collective: every worker attaches here)
        # DDP's overlap: buckets 1.. start their all-reduce from gradient hooks while backward goes on
        # (lab.strategies.overlap); only plain gradients (no compressor, no residual to add first)
        plain = identity and not getattr(self.compression.memory, "residuals", None)
        self.overlap = Overlap(self.buckets, ctx) if (plain and self.timed and getattr(cfg, "overlap", False)
                                                      and len(self.buckets.groups) > 1) else None

    def average(self) -> None:
        comm, compression = self.ctx.comm, self.compression
        if self.per_layer:  # each layer compressed on its own, a bucket's payloads sent together
            for j, group in enumerate(self.layer_buckets):
                items = [(self.params[i].grad.detach().clone(), f"p{i}") for i in group]
                # (the first splits waiting for the slowest worker from communication)
                for i, avg in zip(group, compression.exchange_many(items, comm, self.arrivals if j == 0 else None)):
                    self.params[i].grad.copy_(avg)
            return
        if self.overlap is not None:  # buckets 1.. may be on the wire already: only bucket 0 is gathered here
            self.overlap.start_rest()    # (the rest first: every worker issues the collectives in one order)
            self.buckets.gather_grads(only=1)
            flats = self.buckets.flats[:1]
        else:
            flats = self.buckets.gather_grads()
        if self.timed:
            self.arrivals.stamp(self.buckets.extra)
            busy = comm.ledger.comm_s
        for j, (name, flat) in enumerate(zip(self.buckets.names, flats)):
            # compressed: the first splits waiting from communication itself (no slots in its buckets)
            arrivals = self.arrivals if not self.timed and j == 0 else None
            flat.copy_(compression.exchange_many([(flat, name)], comm, arrivals)[0])
        if self.overlap is not None:
            self.overlap.finish()  # (still inside the timed window: what it blocks is communication or waiting)
        if self.timed:  # the slots were averaged with the gradients: times world undoes it
            self.arrivals.split(self.buckets.extra, comm.ledger.comm_s - busy, scale=self.ctx.world)
        self.buckets.scatter_grads()

    def close(self) -> None:
        """Remove the gradient hooks (the strategy detaches or switches)."""
        if self.overlap is not None:
            self.overlap.close()
            self.overlap = None
