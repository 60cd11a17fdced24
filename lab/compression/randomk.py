"""`randomk`: send k randomly chosen entries, the same ones on every worker (chapter 07, gradient compression).

The indices come from a seed derived from the tensor's name and how many times that name has
been compressed (the step), so every worker draws the same indices without sending them, and
the values can be summed by a plain all-reduce. Kept values are scaled by numel / k, which makes
the compressor unbiased: E[decompress(compress(x))] = x. With error feedback they are *not*
scaled: the residual already carries what was left out, and scaling would make it x - (n/k) x,
a memory that grows without bound (the run diverges).
"""
import zlib

import torch

from . import compressor
from .base import Base, numel
from .topk import TopK


@compressor("randomk")
class RandomK(Base):
    shape_ctx = False  # ctx holds indices re-drawn from a seed all-reduce peers share: no server can decode
    allreduce = True
    Options = TopK.Options  # the same `ratio` knob

    def __init__(self, cfg=None):
        super().__init__(cfg)
        self.steps = {}  # name -> times compressed; advances in lockstep on every worker
        self.unbiased = not self.cfg.error_feedback  # scale by n/k only without error feedback

    def k(self, n: int) -> int:
        return max(1, min(n, int(self.cfg.ratio * n)))

    def compress(self, tensor, name):
        step = self.steps.get(name, 0)
        self.steps[name] = step + 1
        # crc32, not hash(): Python salts str hashes per process, and workers must agree
        gen = torch.Generator().manual_seed((zlib.crc32(name.encode()) << 32) + step)
        flat = tensor.reshape(-1)
        idx = torch.randperm(flat.numel(), generator=gen, device="cpu")[: self.k(flat.numel())].to(flat.device)
        return [flat[idx]], (idx, tensor.shape)

    def state_dict(self) -> dict:
        return {"steps": dict(self.steps)}

    def load_state_dict(self, d: dict) -> None:
        self.steps = dict(d.get("steps", {}))

    def decompress(self, payload, ctx):
        idx, shape = ctx
        n = numel(shape)
        out = torch.zeros(n, dtype=payload[0].dtype, device=payload[0].device)
        values = payload[0] * (n / idx.numel()) if self.unbiased else payload[0]
        return out.index_copy_(0, idx, values).view(shape)

    def payload_bytes(self, shape, itemsize=4):
        return self.k(numel(shape)) * itemsize  # values only: indices are re-drawn, not sent
