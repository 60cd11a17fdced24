"""One compressed exchange of one tensor, and what compression can save (chapter 07, gradient compression).

`exchange` is the template method that chains the three roles of `lab.compression.base`:
memory.compensate -> compressor.compress -> memory.update -> Comm collective -> decompress.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

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
    return exchange_many([(tensor, name)], compressor, memory, comm)[0]


def exchange_many(items: Sequence[Tuple[torch.Tensor, str]], compressor, memory, comm,
                  arrivals=None) -> List[torch.Tensor]:
    """`exchange` of several tensors, each compressed on its own, all travelling in as few collectives
    as their payloads allow: summable payloads in one all-reduce per dtype, gathered ones in one
    all-gather of their bytes. So a per-layer top-k keeps every layer's own k and costs one
    collective a step, not two per layer (as DDP's communication hooks compress a bucket's tensors
    one by one and send the bucket at once). Multi-round compressors (`reduce`, PowerSGD) run their
    own collectives, item by item. Every worker must pass the same names in the same order.
    `arrivals` (`lab.strategies.arrivals.Arrivals`): split the time spent waiting for the slowest
    worker from communication. When every payload is gathered (top-k, random-k, the sign
    compressors), each worker's arrival rides as an 8-byte stamp in the one all-gather (no extra
    message); otherwise all wait at a barrier once all is compressed, before the first collective.

    Returns one averaged tensor per item, in order."""
    out: List[Optional[torch.Tensor]] = [None] * len(items)
    rounds, summed, gathered = [], [], []  # (item index, compressor, tensor or payload, name or ctx)
    for i, (tensor, name) in enumerate(items):
        raw = tensor.numel() * 4  # what the same tensor costs in fp32
        tensor = memory.compensate(tensor, name)
        comp = _IDENTITY if memory.take_flush(name) else compressor  # a flush sends the residual in full, once
        if getattr(comp, "reduce", None) is not None:  # multi-round (PowerSGD): after the barrier
            rounds.append((i, comp, tensor, name, raw))
            continue
        payload, ctx = comp.compress(tensor, name)
        # before the collective: all-reduce sums the payload in place, and the residual needs the local one
        memory.update(tensor, name, comp, payload, ctx)
        comm.note_payload(nbytes(payload), raw)
        (summed if comp.allreduce else gathered).append((i, comp, payload, ctx))
    stamped = arrivals is not None and bool(gathered) and not rounds and not summed
    if arrivals is not None and not stamped:
        comm.barrier()
    for i, comp, tensor, name, raw in rounds:  # the compressor runs its own all-reduces
        payload, ctx = comp.reduce(tensor, name, comm)
        comm.note_payload(nbytes(payload), raw)
        # the residual is taken against the *averaged* result, as torch's powerSGD_hook does
        memory.update(tensor, name, comp, payload, ctx)
        out[i] = comp.decompress(payload, ctx)
    _all_reduce_packed([t for *_, payload, _ in summed for t in payload], comm)
    for i, comp, payload, ctx in summed:
        out[i] = comp.decompress(payload, ctx) / comm.world
    payloads = [payload for *_, payload, _ in gathered]
    if stamped:   # this worker's arrival, gathered with the payloads
        payloads.append([arrivals.stamp_gathered(payloads[0][0].device)])
        busy = comm.ledger.comm_s
    per_item = _all_gather_packed(payloads, comm)
    if stamped:
        arrivals.split_gathered((r[0] for r in per_item.pop()), comm.ledger.comm_s - busy)
    for (i, comp, _, ctx), per_rank in zip(gathered, per_item):
        aggregate = getattr(comp, "aggregate", None)
        out[i] = aggregate(per_rank, ctx) if aggregate else average(comp, per_rank, ctx)
    return out


def _all_reduce_packed(tensors: List[torch.Tensor], comm) -> None:
    """Sum every tensor over the workers in place: one all-reduce per dtype (one tensor alone: no copy)."""
    by_dtype: Dict[torch.dtype, List[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        if len(group) == 1 and group[0].is_contiguous():
            comm.all_reduce(group[0])
            continue
        flat = comm.all_reduce(torch.cat([t.reshape(-1) for t in group]))
        off = 0
        for t in group:
            t.copy_(flat[off:off + t.numel()].view_as(t))
            off += t.numel()


def _all_gather_packed(payloads: List[List[torch.Tensor]], comm) -> List[List[List[torch.Tensor]]]:
    """Every worker's copy of each payload, in one all-gather of their bytes (one tensor alone: as it is).
    Returns, per payload, one payload per rank."""
    tensors = [t for p in payloads for t in p]
    if not tensors:
        return []
    if len(tensors) == 1:
        ranks = [[g] for g in comm.all_gather(tensors[0])]
    else:
        packed = torch.cat([t.contiguous().reshape(-1).view(torch.uint8) for t in tensors])
        stacked = torch.stack(comm.all_gather(packed))   # (ranks, bytes)
        columns, off = [], 0
        for t in tensors:   # one copy per tensor for every rank at once (not one per tensor and rank):
            n = t.numel() * t.element_size()   # a typed view needs its own aligned storage
            col = stacked.new_empty((len(stacked), n)).copy_(stacked[:, off:off + n])   # (row strides of n)
            columns.append(col.view(t.dtype).view(len(stacked), *t.shape))
            off += n
        ranks = [[c[r] for c in columns] for r in range(len(stacked))]
    out, k = [], 0
    for p in payloads:  # regroup the flat list of tensors into payloads
        out.append([r[k:k + len(p)] for r in ranks])
        k += len(p)
    return out


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
