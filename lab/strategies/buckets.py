"""Flattening gradients into buckets (as DDP does) so a few large collectives replace many small ones."""
from __future__ import annotations

from typing import List

import torch


# -- flat views of a model's state ----------------------------------------------------------------
def flat_params(params: List[torch.Tensor], out: torch.Tensor = None) -> torch.Tensor:
    """All parameters as one flat tensor (into `out` when given)."""
    return torch.cat([p.detach().reshape(-1) for p in params], out=out)


def flat_grads(params: List[torch.Tensor], out: torch.Tensor = None) -> torch.Tensor:
    """All gradients as one flat tensor (zeros where a parameter got no gradient)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params], out=out)


def load_flat(tensors: List[torch.Tensor], flat: torch.Tensor) -> None:
    """Copy consecutive slices of `flat` into `tensors` (in place, no autograd)."""
    off = 0
    with torch.no_grad():
        for t in tensors:
            n = t.numel()
            t.copy_(flat[off:off + n].view_as(t))
            off += n


def set_grads(params: List[torch.Tensor], flat: torch.Tensor) -> None:
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    load_flat([p.grad for p in params], flat)


def numel(params) -> int:
    return sum(p.numel() for p in params)


# -- buckets ----------------------------------------------------------------------------------------
def bucket_groups(params: List[torch.Tensor], bucket_mb: float = 25.0) -> List[List[torch.Tensor]]:
    """`params` in order, cut into consecutive groups of at most `bucket_mb` MB (a larger one alone)."""
    limit = max(1, int(bucket_mb * 2**20))
    groups, cur, size = [], [], 0
    for p in params:
        b = p.numel() * p.element_size()
        if cur and size + b > limit:
            groups.append(cur)
            cur, size = [], 0
        cur.append(p)
        size += b
    if cur:
        groups.append(cur)
    return groups


class Buckets:
    """Groups parameters (in order) into flat buckets of at most `bucket_mb` MB.

    `gather_grads()` copies gradients into the flat buffers; `scatter_grads()` copies them back.
    Each bucket keeps a name ("bucket0", ...) so compressors' residuals can be keyed by it.
    `extra` appends that many spare slots to the first bucket (`self.extra`), which travel with
    the gradients at no extra message (sync uses them to time each worker's arrival).
    """

    def __init__(self, params: List[torch.Tensor], bucket_mb: float = 25.0, extra: int = 0):
        self.params = list(params)
        self.groups: List[List[torch.Tensor]] = bucket_groups(self.params, bucket_mb)
        self.flats = [torch.zeros(numel(g) + (extra if i == 0 else 0), dtype=g[0].dtype,
                                  device=g[0].device) for i, g in enumerate(self.groups)]
        self.extra = self.flats[0][self.flats[0].numel() - extra:]
        self.names = [f"bucket{i}" for i in range(len(self.groups))]
        # each parameter's slice of its bucket, shaped like it: made once, so a step's copies are
        # one fused call per bucket each way (a Python loop per parameter cost ~0.1 ms a step)
        self.views = [_views(g, flat) for g, flat in zip(self.groups, self.flats)]

    def gather(self, i: int) -> torch.Tensor:
        """Copy bucket `i`'s gradients into its flat buffer (zeros for a parameter without one); returns it."""
        with torch.no_grad():
            torch._foreach_copy_(self.views[i], _grads(self.groups[i]))
        return self.flats[i]

    def gather_grads(self, only: int = None) -> List[torch.Tensor]:
        """Copy the gradients into the flat buckets (the first `only` buckets when given)."""
        for i in range(len(self.groups) if only is None else min(only, len(self.groups))):
            self.gather(i)
        return self.flats

    def scatter_grads(self) -> None:
        with torch.no_grad():
            for g, views in zip(self.groups, self.views):
                torch._foreach_copy_(_grads(g), views)


def _views(params: List[torch.Tensor], flat: torch.Tensor) -> List[torch.Tensor]:
    """Each parameter's slice of `flat` (in order), shaped like the parameter."""
    chunks = flat[:numel(params)].split([p.numel() for p in params])
    return [c.view_as(p) for c, p in zip(chunks, params)]


def _grads(params: List[torch.Tensor]) -> List[torch.Tensor]:
    """Each parameter's gradient, a zero one made where it has none yet."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    return [p.grad for p in params]
