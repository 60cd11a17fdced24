"""The Compressor and Memory protocols (chapter 07, gradient compression).

Three small roles, as in GRACE (sands-lab/grace): a **Compressor** turns a gradient into a
payload and back, a **Memory** does error feedback, and the communicator (`lab.comm.Comm`) moves
bytes. `lab.compression.exchange.exchange` chains them; no role calls another's collectives.

A compressor's payload is a list of tensors; `ctx` is whatever *local* information decompression
needs (a shape, shared random indices) and never travels. Two ways to combine workers' payloads:

    allreduce = True   payloads can be summed elementwise across workers and decompressing the
                       sum gives the sum of the gradients (fp16, bf16, randomk with a seed shared
                       by all workers): one all-reduce, cheap.
    allreduce = False  every worker's payload is all-gathered and decompressed one by one, then
                       averaged (topk: workers keep different indices; qsgd: different norms).

Optional hooks a compressor may define (`exchange` looks for them by name):

    reduce(tensor, name, comm) -> (payload, ctx)
        multi-round compressors run their own collectives through `comm` and return a payload
        whose `decompress` is already the *average* over workers. PowerSGD needs this: all-reduce
        P = M Q, orthogonalise P, then all-reduce Q = M^T P.
    aggregate(payloads, ctx) -> tensor
        combine the gathered payloads (one per rank) another way than averaging, e.g. signSGD's
        majority vote.
    payload_bytes(shape, itemsize=4) -> int
        bytes handed to the collective for a tensor of this shape (default: uncompressed).
    error_feedback = True
        the compressor is only sound with error feedback, which is then always on (efsignsgd).
    shape_ctx = False
        its ctx depends on more than the tensor's shape (randomk's shared indices), so it cannot
        be decoded by a parameter server (lab.compression.wire); default True.
"""
from __future__ import annotations

import math
from typing import Any, List, Protocol, Sequence, Tuple

import torch

from ..knobs import defaults
from . import Common

Payload = List[torch.Tensor]


class Compressor(Protocol):
    name: str
    allreduce: bool  # True: payloads may be summed across workers (see module docstring)

    def compress(self, tensor: torch.Tensor, name: str) -> Tuple[Payload, Any]:
        """Payload tensors to send and a local ctx; `name` keys per-tensor state (seeds, warm start)."""

    def decompress(self, payload: Payload, ctx: Any) -> torch.Tensor:
        """A tensor of the input's shape and dtype."""


class Memory(Protocol):
    def compensate(self, tensor: torch.Tensor, name: str) -> torch.Tensor:
        """The gradient plus what earlier compressions of `name` dropped."""

    def update(self, tensor: torch.Tensor, name: str, compressor: Compressor, payload: Payload, ctx: Any) -> None:
        """Remember what this compression dropped: tensor - decompress(payload, ctx)."""

    def on_switch(self, mode: str) -> None:
        """The compressor changed: "keep", "reset" or "flush" the residuals (CompressionConfig.on_switch)."""

    def take_flush(self, name: str) -> bool:
        """True once per flushed name: its next exchange then goes uncompressed."""

    def state_dict(self) -> dict:
        """The residuals as CPU tensors (for a checkpoint)."""

    def load_state_dict(self, d: dict) -> None:
        """Restore `state_dict`'s output."""


class Base:
    """Shared by the compressors: keeps the config (defaults when none is given)."""
    allreduce = False
    error_feedback = False
    identity = False   # True only for `none`: gradients travel as they are
    shape_ctx = True

    Options = None  # a dataclass of the compressor's own knobs (lab.knobs), joined into CompressionConfig

    def __init__(self, cfg=None):
        # cfg: the run's lab.config.CompressionConfig; without one, the declared defaults
        self.cfg = cfg if cfg is not None else defaults(Common, type(self).Options, name=getattr(self, "name", ""))

    def payload_bytes(self, shape: Sequence[int], itemsize: int = 4) -> int:
        return numel(shape) * itemsize

    def state_dict(self) -> dict:
        """Per-name state to checkpoint (e.g. PowerSGD's warm start); {} for stateless compressors."""
        return {}

    def load_state_dict(self, d: dict) -> None:
        pass

    def __repr__(self):
        return f"{type(self).__name__}({self.cfg})"


def numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def nbytes(payload: Payload) -> int:
    """Bytes a worker hands to the collective for this payload."""
    return sum(t.numel() * t.element_size() for t in payload)


def payload_bytes(compressor, shape: Sequence[int], itemsize: int = 4) -> int:
    """`compressor.payload_bytes` where defined (the identity has none: it sends the tensor)."""
    fn = getattr(compressor, "payload_bytes", None)
    return fn(shape, itemsize) if fn else numel(shape) * itemsize


def average(compressor, payloads: List[Payload], ctx) -> torch.Tensor:
    """Default combination of gathered payloads: decompress each, then the mean."""
    return sum(compressor.decompress(p, ctx) for p in payloads) / len(payloads)


def int_dtype(max_abs: int) -> torch.dtype:
    """The smallest signed integer dtype holding [-max_abs, max_abs] (quantised levels travel in it)."""
    for dt in (torch.int8, torch.int16, torch.int32):
        if max_abs <= torch.iinfo(dt).max:
            return dt
    return torch.int64
