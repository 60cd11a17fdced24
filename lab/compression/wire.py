"""Compressed gradients over point-to-point links: what `ps` and `async` send to the server (chapter 07).

An all-reduce hands each compressor's payload tensors to a collective; a parameter server receives
one message per worker instead. `WireCodec` packs a payload into one byte buffer whose size is fixed
by the gradient's shape (so the server knows how much to receive) and unpacks it on the other side.
It works for compressors whose local `ctx` depends only on the shape (`shape_ctx = True`); randomk
re-draws its indices from a seed shared by all-reduce peers and so cannot go to a server.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


class WireCodec:
    """Encode (error feedback + compress + pack) and decode (unpack + decompress) one flat gradient.

    Args:
        compressor: a Compressor (lab.compression.base); `memory`: its error-feedback memory
            (both the worker's: `Compression.wire` in lab.compression.owner makes the codec).
        like: a tensor shaped and typed as the gradients to send.
        strategy: the strategy's name, for the error message.
    """

    def __init__(self, compressor, memory, like: torch.Tensor, strategy: str, name: str = "flat"):
        if not getattr(compressor, "shape_ctx", True):
            raise ConfigError("compressor", f"a compressor a server can decode with strategy {strategy} "
                                            f"(not {compressor.name}: its indices are shared by all-reduce peers)",
                              compressor.name)
        self.compressor, self.memory, self.name = compressor, memory, name
        # the layout of a payload depends only on the shape: learn it once from a probe
        payload, self.ctx = compressor.compress(torch.zeros_like(like), f"{name}/probe")
        self.layout = [(t.shape, t.dtype, t.numel() * t.element_size()) for t in payload]
        self.nbytes = sum(n for _, _, n in self.layout)
        self.raw = like.numel() * 4

    def encode(self, grad: torch.Tensor) -> torch.Tensor:
        """This worker's gradient as the bytes to send (residual kept in memory)."""
        grad = self.memory.compensate(grad, self.name)
        payload, ctx = self.compressor.compress(grad, self.name)
        self.memory.update(grad, self.name, self.compressor, payload, ctx)
        return torch.cat([_bytes(t) for t in payload])

    def decode(self, buf: torch.Tensor) -> torch.Tensor:
        """The gradient a worker's bytes stand for."""
        payload, off = [], 0
        for shape, dtype, n in self.layout:
            payload.append(buf[off:off + n].clone().view(dtype).reshape(shape))
            off += n
        return self.compressor.decompress(payload, self.ctx)

    def empty(self, device=None) -> torch.Tensor:
        return torch.empty(self.nbytes, dtype=torch.uint8, device=device)

