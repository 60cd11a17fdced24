"""`terngrad`: unbiased ternary gradients (Wen et al. 2017; chapter 07, gradient compression).

Each entry becomes s * sign(x_i) * b_i with s = max |x| and b_i ~ Bernoulli(|x_i| / s): values
in {-s, 0, s} and E = x. (The paper adds per-layer gradient clipping to shrink s; not here.)
The ternary digits travel as int8, 4x fewer bytes; packing four to a byte would give 16x.
"""
import torch

from . import compressor
from .base import Base, numel


@compressor("terngrad")
class TernGrad(Base):
    allreduce = False  # workers' scales differ

    def compress(self, tensor, name):
        flat = tensor.reshape(-1)
        scale = flat.abs().max().reshape(1)
        keep = torch.rand_like(flat) * scale < flat.abs()  # P(keep) = |x| / s
        return [scale, (flat.sign() * keep).to(torch.int8)], tensor.shape

    def decompress(self, payload, ctx):
        scale, tern = payload
        return (tern.to(scale.dtype) * scale).view(ctx)

    def payload_bytes(self, shape, itemsize=4):
        return itemsize + numel(shape)
