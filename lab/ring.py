"""Ring all-reduce written by hand (chapter 04, synchronous data parallelism).

The algorithm behind `sync`: split each worker's tensor into n chunks; in n-1 *reduce-scatter*
steps every worker sends one chunk to its right neighbour and adds the chunk it receives from
its left, so each worker ends up owning one fully summed chunk; in n-1 *all-gather* steps the
summed chunks travel round the ring. Each worker sends 2 (n-1) messages of B/n bytes: 2 (n-1)/n * B
in all, whatever n is — the reason rings scale (`lab.comm` charges exactly this).

`simulate` runs the algorithm on n tensors in one process and logs every message; `all_reduce`
runs it on a real cluster with point-to-point sends between engines. Both are checked against
`sum` and `torch.distributed.all_reduce` in tests/test_ring.py and in the chapter.
"""
from __future__ import annotations

from typing import List, Tuple

import torch


def _chunks(n_items: int, n: int) -> List[Tuple[int, int]]:
    """(start, end) of n nearly equal chunks (the first ones one longer when n does not divide)."""
    bounds = torch.linspace(0, n_items, n + 1).round().long().tolist()
    return list(zip(bounds[:-1], bounds[1:]))


def simulate(tensors: List[torch.Tensor]):
    """Ring all-reduce of one tensor per worker, in one process.

    Returns:
        (results, log): each worker's result (all equal to the sum), and one entry per message
        `(step, phase, src, dst, chunk, nbytes)`.

    Example:
        >>> outs, log = simulate([torch.ones(6) * r for r in range(3)])
        >>> outs[0]
        tensor([3., 3., 3., 3., 3., 3.])
    """
    n = len(tensors)
    bufs = [t.detach().clone().reshape(-1) for t in tensors]
    spans = _chunks(bufs[0].numel(), n)
    log = []
    for phase in ("reduce-scatter", "all-gather"):
        for s in range(n - 1):
            # every worker sends at once: read all outgoing chunks before anyone writes
            sends = []
            for r in range(n):
                c = (r - s + (0 if phase == "reduce-scatter" else 1)) % n
                a, b = spans[c]
                sends.append((r, (r + 1) % n, c, bufs[r][a:b].clone()))
            for src, dst, c, data in sends:
                a, b = spans[c]
                if phase == "reduce-scatter":
                    bufs[dst][a:b] += data
                else:
                    bufs[dst][a:b] = data
                log.append((s, phase, src, dst, c, data.numel() * data.element_size()))
    return [b.view_as(t) for b, t in zip(bufs, tensors)], log


def all_reduce(tensor: torch.Tensor, group=None) -> torch.Tensor:
    """Ring all-reduce (sum) in place on a real cluster, with point-to-point messages.

    Call it on every rank at once (e.g. through `cluster.client[e].apply_async`). Each step posts
    the send without waiting (`isend`) before receiving, so no worker blocks its neighbour.
    """
    import torch.distributed as dist
    rank, n = dist.get_rank(group), dist.get_world_size(group)
    flat = tensor.view(-1)
    spans = _chunks(flat.numel(), n)
    right, left = (rank + 1) % n, (rank - 1) % n
    for phase in (0, 1):
        for s in range(n - 1):
            out_c = (rank - s + phase) % n
            in_c = (rank - s - 1 + phase) % n
            a, b = spans[out_c]
            req = dist.isend(flat[a:b].clone(), right, group=group)
            a, b = spans[in_c]
            incoming = torch.empty_like(flat[a:b])
            dist.recv(incoming, left, group=group)
            req.wait()
            if phase == 0:
                flat[a:b] += incoming
            else:
                flat[a:b] = incoming
    return tensor


def engine_check(size: int = 1000, seed: int = 0) -> float:
    """Runs on an engine: largest difference between the hand-written ring and dist.all_reduce."""
    import torch.distributed as dist
    g = torch.Generator().manual_seed(seed + dist.get_rank())
    x = torch.randn(size, generator=g, dtype=torch.float64)
    ours = all_reduce(x.clone())
    ref = x.clone()
    dist.all_reduce(ref)
    return (ours - ref).abs().max().item()
