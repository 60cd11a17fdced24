"""`signsgd`: one bit per entry plus one scale (chapter 07, gradient compression).

The scaled sign: x -> mean|x| * sign(x) (mean|x| = ||x||_1 / d keeps the step's size), sent as
packed bits, about 32x fewer bytes than fp32. With `majority_vote` (Bernstein et al. 2018,
signSGD with majority vote) workers' signs are combined by an elementwise vote instead of
averaged: the result is sign(sum of signs) * mean scale. Biased; see `efsignsgd` for the
version with error feedback.
"""
import torch

from dataclasses import dataclass

from ..knobs import knob
from . import compressor
from .base import Base, average, numel

_BITS = 2 ** torch.arange(8, dtype=torch.uint8)  # bit weights within a byte


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Bool tensor -> uint8 tensor eight times shorter (zero-padded to a multiple of 8)."""
    bits = torch.nn.functional.pad(bits.reshape(-1).to(torch.uint8), (0, -bits.numel() % 8))
    return (bits.view(-1, 8) * _BITS.to(bits.device)).sum(1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of `pack_bits`: the first n bits as a bool tensor."""
    return (packed.unsqueeze(1) & _BITS.to(packed.device)).ne(0).reshape(-1)[:n]


@compressor("signsgd")
class SignSGD(Base):
    allreduce = False  # workers' scales differ, and bits cannot be summed

    @dataclass
    class Options:
        majority_vote: bool = knob(False, "combine workers' signs by majority vote instead of the mean", live=True)

    def __init__(self, cfg=None, majority_vote=None):
        super().__init__(cfg)
        self.majority_vote = self.cfg.majority_vote if majority_vote is None else majority_vote

    def compress(self, tensor, name):
        flat = tensor.reshape(-1)
        return [flat.abs().mean().reshape(1), pack_bits(flat >= 0)], tensor.shape

    def signs(self, payload, ctx):
        return unpack_bits(payload[1], numel(ctx)).to(payload[0].dtype) * 2 - 1

    def decompress(self, payload, ctx):
        return (self.signs(payload, ctx) * payload[0]).view(ctx)

    def aggregate(self, payloads, ctx):
        if not self.majority_vote:
            return average(self, payloads, ctx)
        votes = sum(self.signs(p, ctx) for p in payloads)
        scale = sum(p[0] for p in payloads) / len(payloads)
        return (votes.sign() * scale).view(ctx)  # a tie (even workers) sends 0

    def payload_bytes(self, shape, itemsize=4):
        return itemsize + (numel(shape) + 7) // 8
