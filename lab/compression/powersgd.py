"""`powersgd`: rank-r approximation by one power iteration (Vogels et al. 2019; chapter 07).

Follows torch's `powerSGD_hook`: view the gradient as a matrix M (n x m), then
    P = M Q          all-reduce (sum), orthogonalise P
    Q = M^T P        all-reduce, divide by workers
    M ~ P Q^T        the average gradient, identical on every worker
r (n + m) numbers travel instead of n m. Q is kept per name and reused next step (warm start),
which makes successive steps a power iteration. Per layer (scope "layer"), as torch's
`powerSGD_hook`: every tensor is viewed as (shape[0], rest), so weights become (out, in*kh*kw)
and biases (n, 1), which never gain and travel uncompressed. With scope "global" the flat bucket
is folded into a near-square zero-padded matrix, as torch's `batched_powerSGD_hook` does. A tensor
too small to gain (r (n+m) >= n m) travels uncompressed. Biased: use error feedback (torch's default).
"""
import math
import zlib

import torch

from dataclasses import dataclass

from ..knobs import knob
from . import compressor
from .base import Base, numel


def orthogonalize(m: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt on the columns of m, in place (torch's hook does the same for rank <= 2)."""
    for i in range(m.shape[1]):
        col = m[:, i:i + 1]
        col /= col.norm().clamp_min(torch.finfo(m.dtype).tiny)  # a zero column stays zero, not NaN
        rest = m[:, i + 1:]
        rest -= (col * rest).sum(0, keepdim=True) * col
    return m


def matrix_shape(shape, fold: bool = False) -> tuple:
    """The (rows, cols) PowerSGD factorises for a tensor of this shape.

    (shape[0], the rest), as torch's `powerSGD_hook`; with `fold`, a vector (a flat bucket) becomes
    a near-square matrix instead, as torch's `batched_powerSGD_hook`.
    """
    if fold and len(shape) <= 1:
        cols = math.ceil(math.sqrt(max(1, numel(shape))))
        return math.ceil(numel(shape) / cols) or 1, cols
    return (shape[0], numel(shape[1:])) if len(shape) else (1, 1)


@compressor("powersgd")
class PowerSGD(Base):
    vector_needs_global = True  # a vector (what a server receives) compresses only folded: scope "global"
    allreduce = True  # through its own `reduce` hook: two all-reduces per tensor

    @dataclass
    class Options:
        rank: int = knob(2, "rank r of the low-rank approximation", range=(1, None), live=True, ui=(1, 16))

    def __init__(self, cfg=None):
        super().__init__(cfg)
        self.q = {}  # name -> last step's averaged Q (torch's q_memory_dict): the warm start

    def rank(self, rows, cols):
        return min(self.cfg.rank, rows, cols)

    def matrix_shape(self, shape) -> tuple:
        return matrix_shape(shape, fold=self.cfg.scope == "global")

    def compresses(self, shape) -> bool:
        rows, cols = self.matrix_shape(shape)
        return self.rank(rows, cols) * (rows + cols) < rows * cols

    def compress(self, tensor, name):
        return self.reduce(tensor, name, comm=None)  # one worker: the same rounds, no collectives

    def reduce(self, tensor, name, comm):
        """Run the two rounds through `comm`; returns a payload that decompresses to the average."""
        world, all_reduce = (comm.world, comm.all_reduce) if comm else (1, lambda t: t)
        ctx = tensor.shape
        if not self.compresses(ctx):
            return [all_reduce(tensor.clone()).div_(world)], ctx  # clone: the caller keeps its input
        rows, cols = self.matrix_shape(ctx)
        flat = tensor.reshape(-1)
        m = torch.nn.functional.pad(flat, (0, rows * cols - flat.numel())).view(rows, cols)
        r = self.rank(rows, cols)
        q = self.q.get(name)
        if q is None or q.shape != (cols, r):  # the same seed on every worker: a shared first projection
            gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            q = torch.randn(cols, r, generator=gen, dtype=m.dtype, device="cpu").to(m.device)
        q = orthogonalize(q.to(m.device).clone())  # a Q loaded from a checkpoint is on CPU
        p = all_reduce(m @ q)  # summed, not averaged: P is orthogonalised next, so scale is moot
        orthogonalize(p)
        q = all_reduce(m.t() @ p).div_(world)
        self.q[name] = q
        return [p, q], ctx

    def state_dict(self) -> dict:
        return {"q": {k: v.detach().cpu().clone() for k, v in self.q.items()}}

    def load_state_dict(self, d: dict) -> None:
        self.q = {k: v.clone() for k, v in d.get("q", {}).items()}

    def decompress(self, payload, ctx):
        if len(payload) == 1:
            return payload[0]
        p, q = payload
        return (p @ q.t()).reshape(-1)[: numel(ctx)].view(ctx)

    def payload_bytes(self, shape, itemsize=4):
        if not self.compresses(shape):
            return numel(shape) * itemsize
        rows, cols = self.matrix_shape(shape)
        return self.rank(rows, cols) * (rows + cols) * itemsize
