"""`bf16`: send gradients as bfloat16, 2x fewer bytes (chapter 07, gradient compression).

bfloat16 keeps fp32's 8 exponent bits (no overflow where fp32 has none) and only 8 bits of
mantissa: a relative rounding error up to 2^-8 per entry, against fp16's 2^-11.
"""
import torch

from . import compressor
from .fp16 import Cast


@compressor("bf16")
class BF16(Cast):
    dtype = torch.bfloat16
