"""One compressed exchange of one tensor, and what compression can save (chapter 07, gradient compression).

`exchange` is the template method that chains the three roles of `lab.compression.base`:
memory.compensate -> compressor.compress -> memory.update -> Comm collective -> decompress.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence

import torch

from . import COMPRESSORS
from .base import average, nbytes, numel, payload_bytes
from .none import NoCompression

_IDENTITY = NoCompression()


def exchange(tensor: torch.Tensor, name: str, compressor, memory, comm) -> torch.Tensor:
    """Average `tensor` over all workers, sent compressed; every worker gets the same result.

    Args:
        tensor: this worker's gradient (a parameter's, or a flat bucket such as "bucket0").
            It may be overwritten (the identity all-reduces in place, as plain all-reduce does);
            use the returned tensor.
        name: keys the memory's residual and the compressor's state (seeds, warm start).
        compressor: a Compressor (see `lab.compression.base`), e.g. `COMPRESSORS.build("topk", cfg)`.
        memory: `Residual()` for error feedback or `NoMemory()` (see `build_memory`).
        comm: a `lab.comm.Comm`; its ledger records the payload bytes against the fp32 size.

    Returns:
        The average over workers, same shape and dtype as `tensor`.

    Example:
        >>> comp = COMPRESSORS.build("topk", CompressionConfig(name="topk", ratio=0.01))
        >>> grad = exchange(flat, "bucket0", comp, Residual(), comm)
    """
    raw = tensor.numel() * 4  # what the same tensor costs in fp32
    tensor = memory.compensate(tensor, name)
    if memory.take_flush(name):
        compressor = _IDENTITY  # a flush sends the residual in full, once (see lab.compression.memory)
    reduce = getattr(compressor, "reduce", None)
    if reduce is not None:  # multi-round (PowerSGD): the compressor runs its own all-reduces
        payload, ctx = reduce(tensor, name, comm)
        comm.note_payload(nbytes(payload), raw)
        # the residual is taken against the *averaged* result, as torch's powerSGD_hook does
        memory.update(tensor, name, compressor, payload, ctx)
        return compressor.decompress(payload, ctx)
    payload, ctx = compressor.compress(tensor, name)
    # before the collective: all-reduce sums the payload in place, and the residual needs the local one
    memory.update(tensor, name, compressor, payload, ctx)
    comm.note_payload(nbytes(payload), raw)
    if compressor.allreduce:
        for t in payload:
            comm.all_reduce(t)
        return compressor.decompress(payload, ctx) / comm.world
    gathered = [comm.all_gather(t) for t in payload]  # one list per payload tensor, one entry per rank
    per_rank = [list(ts) for ts in zip(*gathered)]
    aggregate = getattr(compressor, "aggregate", None)
    return aggregate(per_rank, ctx) if aggregate else average(compressor, per_rank, ctx)


def payload_ratio(compressor, shapes: Iterable[Sequence[int]], itemsize: int = 4) -> float:
    """fp32 bytes / payload bytes for one exchange of tensors with these shapes.

    The limit a compressor reaches on a model, before collective overheads: e.g. powersgd with
    rank r on an (n, m) matrix gives n m / (r (n + m)); topk with ratio k gives 4 / (k (4 + 4))
    (values plus int32 indices); signsgd about 32. It equals what `exchange` records in the
    ledger (`raw_bytes / payload_bytes`) for fp32 gradients.
    """
    shapes = [tuple(s) for s in shapes]
    raw = sum(numel(s) for s in shapes) * 4
    return raw / sum(payload_bytes(compressor, s, itemsize) for s in shapes)


def payload_ratios(shapes: Iterable[Sequence[int]], cfg=None, names: Optional[Iterable[str]] = None) -> Dict[str, float]:
    """`payload_ratio` of each registered compressor (or of `names`) built with `cfg`'s knobs.

    Example:
        >>> payload_ratios([(64, 3, 3, 3), (64,), (10, 64)], CompressionConfig(rank=2, ratio=0.01))
        {'bf16': 2.0, 'efsignsgd': 30.78..., 'fp16': 2.0, 'none': 1.0, 'powersgd': 6.71..., ...}
    """
    shapes = [tuple(s) for s in shapes]
    return {n: payload_ratio(COMPRESSORS.build(n, cfg), shapes) for n in (names or COMPRESSORS.names())}
