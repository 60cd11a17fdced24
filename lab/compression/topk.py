"""`topk`: send the k largest-magnitude entries and their indices (chapter 07, gradient compression).

k = max(1, int(ratio * numel)). The scope is the caller's choice (`CompressionConfig.scope`):
with "layer" the caller passes each parameter's gradient, so every layer keeps its own share;
with "global" it passes one flat tensor of all the gradients, so the layers with the largest
gradients may take the whole budget. Top-k is biased (small entries never travel), so use it
with error feedback. Workers keep different indices, so payloads are all-gathered, not summed.
"""
import torch

from dataclasses import dataclass

from ..knobs import knob
from . import compressor
from .base import Base, numel


@compressor("topk")
class TopK(Base):
    allreduce = False

    @dataclass
    class Options:
        ratio: float = knob(0.01, "share of entries kept: k = ratio * numel", range="(0, 1]", live=True,
                            widget="log", ui=(1e-3, 1))

    def k(self, n: int) -> int:
        return max(1, min(n, int(self.cfg.ratio * n)))

    def compress(self, tensor, name):
        flat = tensor.reshape(-1)
        _, idx = flat.abs().topk(self.k(flat.numel()), sorted=False)
        # int32 indices: half the bytes of torch's int64, enough for 2^31 entries per tensor
        return [flat[idx], idx.to(torch.int32)], tensor.shape

    def decompress(self, payload, ctx):
        values, idx = payload
        out = torch.zeros(numel(ctx), dtype=values.dtype, device=values.device)
        return out.index_copy_(0, idx.long(), values).view(ctx)

    def payload_bytes(self, shape, itemsize=4):
        return self.k(numel(shape)) * (itemsize + 4)  # values + int32 indices
