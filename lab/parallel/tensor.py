"""Tensor parallelism, Megatron-style, for a two-layer MLP (chapter 09).

Y = relu(X A) B with A split by *columns* and B by *rows* across n workers: worker i computes
relu(X A_i) B_i, and one all-reduce sums the partial outputs. In the backward pass the mirror
all-reduce sums the gradient with respect to X. Two tiny autograd functions carry this:
`_copy` (identity forward, all-reduce backward) and `_reduce` (all-reduce forward, identity backward).
"""
from __future__ import annotations

import torch
from torch import nn


class _copy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, g):
        import torch.distributed as dist
        g = g.clone()
        dist.all_reduce(g)
        return g


class _reduce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        import torch.distributed as dist
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, g):
        return g


class ParallelMLP(nn.Module):
    """This worker's shard of `full` (an nn.Sequential(Linear, ReLU, Linear)): columns of the first
    layer's weight and the matching rows of the second's."""

    def __init__(self, full: nn.Sequential, rank: int, world: int):
        super().__init__()
        l1, l2 = full[0], full[2]
        cols = torch.arange(l1.out_features).chunk(world)[rank]
        self.w1 = nn.Parameter(l1.weight.detach()[cols].clone())
        self.b1 = nn.Parameter(l1.bias.detach()[cols].clone())
        self.w2 = nn.Parameter(l2.weight.detach()[:, cols].clone())
        self.b2 = nn.Parameter(l2.bias.detach().clone() / world)  # summed by the all-reduce
        self.cols = cols

    def forward(self, x):
        x = _copy.apply(x)
        h = torch.relu(x @ self.w1.T + self.b1)
        return _reduce.apply(h @ self.w2.T + self.b2)


def mlp(d_in=64, hidden=256, d_out=10, seed=0, dtype=torch.float64) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out)).to(dtype)


def engine_check(batch: int = 32, hidden: int = 256) -> dict:
    """Runs on every engine: the sharded MLP against the full one (outputs and gradients)."""
    import torch.distributed as dist
    rank, world = dist.get_rank(), dist.get_world_size()
    full = mlp(hidden=hidden)
    x = torch.randn(batch, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    y_full = full(x)
    y_full.square().sum().backward()
    shard = ParallelMLP(full, rank, world)
    xs = x.detach().clone().requires_grad_(True)
    y = shard(xs)
    y.square().sum().backward()
    c = shard.cols
    return {"rank": rank, "params": sum(p.numel() for p in shard.parameters()),
            "out": (y - y_full).abs().max().item(),
            "grad_x": (xs.grad - x.grad).abs().max().item(),
            "grad_w1": (shard.w1.grad - full[0].weight.grad[c]).abs().max().item(),
            "grad_w2": (shard.w2.grad - full[2].weight.grad[:, c]).abs().max().item()}
