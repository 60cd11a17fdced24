"""`qsgd`: unbiased stochastic quantisation to s levels (Alistarh et al. 2017; chapter 07, gradient compression).

Each entry x_i becomes ||x||_2 * sign(x_i) * l_i / s with l_i in {0, ..., s}: |x_i| / ||x|| * s
is rounded down or up at random, up with probability equal to its fractional part, so
E[decompress(compress(x))] = x. The payload is the norm plus one small integer per entry
(int8 while s <= 127); workers' norms differ, so payloads are all-gathered, not summed.
"""
import torch

from dataclasses import dataclass

from ..knobs import knob
from . import compressor
from .base import Base, int_dtype, numel


@compressor("qsgd")
class QSGD(Base):
    allreduce = False

    @dataclass
    class Options:
        levels: int = knob(16, "quantisation levels s", range=(1, None), live=True, ui=(1, 256))

    def compress(self, tensor, name):
        s = self.cfg.levels
        flat = tensor.reshape(-1)
        norm = flat.norm().reshape(1)
        scaled = flat.abs() / norm.clamp_min(torch.finfo(flat.dtype).tiny) * s
        low = scaled.floor()
        level = low + (torch.rand_like(scaled) < scaled - low)  # round up with prob = fraction
        level = level.clamp_(max=s)  # rounding can push |x| / ||x|| a hair above 1
        return [norm, (level * flat.sign()).to(int_dtype(s))], tensor.shape

    def decompress(self, payload, ctx):
        norm, q = payload
        return (q.to(norm.dtype) * (norm / self.cfg.levels)).view(ctx)

    def payload_bytes(self, shape, itemsize=4):
        return itemsize + numel(shape) * torch.iinfo(int_dtype(self.cfg.levels)).bits // 8
