"""Overlapping the gradient all-reduce with backward, as DDP does (`sync`, issue 12).

Backward produces gradients from the last layer to the first, so the last bucket of
`lab.strategies.buckets.Buckets` is complete long before backward ends. A gradient hook on every
parameter (`register_post_accumulate_grad_hook`) counts down each bucket; once a bucket is
complete its all-reduce starts at once (`Comm.all_reduce_start`) while backward goes on
computing the earlier layers. Buckets start in one fixed order on every worker (the last bucket
first; one that is not complete holds back the ones after it, as DDP's do), so the collectives
match across workers whatever the timing.

Bucket 0 (the first layers, complete last, carrying the arrival-time slots of
`lab.strategies.gradients`) always travels in `step()`, after the trainer's straggler sleep:
a slow worker still holds the others back there, and the waiting split stays true. With one
bucket (any model under `bucket_mb`) nothing overlaps and the exchange is what it was. When the
trainer edits gradients after backward (`ctx.local_clip`: gradient clipping), nothing starts early.

Accounting: bytes as the plain all-reduce (started = charged); the time a collective was in
flight before `step()` waited for it is `overlap_s` (hidden behind compute, outside `step_s`'s
parts), the time blocked waiting for it is `comm_s`.
"""
from __future__ import annotations

from typing import Dict, List

from .buckets import Buckets


class Overlap:
    """Start buckets 1..n-1's all-reduces from gradient hooks; `finish()` in step() waits for them.

    Args:
        buckets: the averager's buckets (bucket 0 is left to the caller).
        ctx: the worker's context (its comm; `local_clip` turns early starts off).
    """

    def __init__(self, buckets: Buckets, ctx):
        self.buckets, self.ctx = buckets, ctx
        self.order: List[int] = list(range(len(buckets.groups) - 1, 0, -1))  # start order: last bucket first
        self.of: Dict[int, int] = {id(p): i for i in self.order for p in buckets.groups[i]}
        self.handles = [p.register_post_accumulate_grad_hook(self._on_grad)
                        for i in self.order for p in buckets.groups[i]]
        self.reset()

    @property
    def active(self) -> bool:
        return bool(self.order)

    def reset(self) -> None:
        self.left = {i: len(self.buckets.groups[i]) for i in self.order}
        self.next = 0          # index into `order` of the next bucket to start
        self.pending = []

    def _on_grad(self, p) -> None:
        """A parameter's gradient is complete (called by autograd during backward)."""
        i = self.of.get(id(p))
        if i is None or self.ctx.local_clip > 0:  # clipping edits gradients after backward: start nothing early
            return
        self.left[i] -= 1
        while self.next < len(self.order) and self.left[self.order[self.next]] <= 0:
            self._start(self.order[self.next], early=True)

    def _start(self, i: int, early: bool) -> None:
        flat = self.buckets.gather(i)
        comm = self.ctx.comm
        comm.note_payload(flat.numel() * flat.element_size(), flat.numel() * 4)
        work = comm.all_reduce_start(flat)
        if not early:
            work.started = None  # started after backward: its time is plain communication
        self.pending.append(work)
        self.next += 1

    def start_rest(self) -> None:
        """In step(), before bucket 0: start what backward left (a bucket with a parameter that got no
        gradient, or everything under clipping), in the same order, so every worker's collectives match."""
        while self.next < len(self.order):
            self._start(self.order[self.next], early=False)

    def finish(self) -> None:
        """Wait for every started all-reduce and average: buckets 1..n-1 then hold the mean gradient."""
        self.start_rest()
        for work in self.pending:
            work.wait()
        world = self.ctx.world
        for i in self.order:
            self.buckets.flats[i].div_(world)
        self.reset()

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
