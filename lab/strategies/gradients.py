"""Averaging gradients across workers, compressed or not: what `sync` (and friends) call after backward.

Without compression the gradients travel in flat buckets (few large all-reduces, as DDP does).
With a compressor (chapter 07) they go through `lab.compression.exchange.exchange`, per layer
(`scope="layer"`: each parameter's gradient under its own name, so top-k and PowerSGD see the
layer's shape) or as one flat tensor per bucket (`scope="global"`). Error-feedback residuals
live in the worker's memory (`ctx.memory`), which outlives strategy and compressor switches.
"""
from __future__ import annotations

from ..compression import COMPRESSORS
from ..compression.exchange import exchange
from ..compression.memory import build_memory
from .buckets import Buckets


class GradientAverager:
    """`average()` replaces every parameter's .grad by the average over workers."""

    def __init__(self, params, cfg, ctx):
        self.params, self.cfg, self.ctx = list(params), cfg, ctx
        cc = cfg.compression
        self.compressor = COMPRESSORS.build(cc.name, cc)
        if getattr(ctx, "memory", None) is None:
            ctx.memory = build_memory(cc, self.compressor)
        self.per_layer = cc.name != "none" and cc.scope == "layer"
        self.buckets = None if self.per_layer else Buckets(self.params, cfg.bucket_mb)

    def average(self) -> None:
        comm, memory = self.ctx.comm, self.ctx.memory
        if self.per_layer:
            for i, p in enumerate(self.params):
                p.grad.copy_(exchange(p.grad.detach().clone(), f"p{i}", self.compressor, memory, comm))
            return
        for name, flat in zip(self.buckets.names, self.buckets.gather_grads()):
            flat.copy_(exchange(flat, name, self.compressor, memory, comm))
        self.buckets.scatter_grads()
