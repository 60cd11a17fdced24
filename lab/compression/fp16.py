"""`fp16`: send gradients in half precision, 2x fewer bytes (chapter 07, gradient compression).

Like torch's `fp16_compress_hook`: the payload is summed in the low precision and cast back.
The sum happens before dividing by the number of workers, so gradients beyond 65504 / workers
would overflow fp16; `bf16` has fp32's range (and fewer mantissa bits) if that matters.
"""
import torch

from . import compressor
from .base import Base, numel


class Cast(Base):
    """Cast to `dtype` for the wire and back to the input's dtype."""
    allreduce = True     # sums of casts are casts of sums, up to rounding
    dtype = torch.float16

    def compress(self, tensor, name):
        return [tensor.to(self.dtype)], tensor.dtype

    def decompress(self, payload, ctx):
        return payload[0].to(ctx)

    def payload_bytes(self, shape, itemsize=4):
        return numel(shape) * torch.finfo(self.dtype).bits // 8


@compressor("fp16")
class FP16(Cast):
    dtype = torch.float16
