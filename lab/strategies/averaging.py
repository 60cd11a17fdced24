"""Making every worker's state identical, what `detach` promises: broadcast one worker's state, or
average everybody's (used by `ps`, `async`, `ssp` and `local`).

Both are collectives (every rank calls them) through `Comm`, so the ledger counts their bytes.
"""
from __future__ import annotations

import io
from typing import List

import torch

from .buckets import flat_params, load_flat


def pack_state(state: dict, device) -> torch.Tensor:
    """An optimizer's state_dict as bytes in a uint8 tensor on `device`, to travel through a Comm
    (other workers may not even have its buffers yet, e.g. a momentum buffer only a server used)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8).to(device)


def unpack_state(data: torch.Tensor) -> dict:
    """`pack_state`'s input back, mapped to the CPU: load_state_dict moves each buffer next to its
    parameter, but keeps Adam's `step` counter where it is (on CPU unless capturable)."""
    return torch.load(io.BytesIO(data.cpu().numpy().tobytes()), map_location="cpu", weights_only=True)


def broadcast_state(comm, params: List[torch.Tensor], optimizer: torch.optim.Optimizer, src: int = 0) -> None:
    """Give every worker `src`'s parameters and optimizer state (a collective: all ranks call it).

    The optimizer state travels serialised (`pack_state`), as bytes through `comm.broadcast`, so
    the ledger counts them.
    """
    if comm.world == 1:
        return
    dev = params[0].device
    flat = flat_params(params)
    comm.broadcast(flat, src)
    if comm.rank != src:
        load_flat(params, flat)
    if comm.rank == src:
        data = pack_state(optimizer.state_dict(), dev)
        size = torch.tensor([data.numel()], dtype=torch.int64, device=dev)
    else:
        size = torch.zeros(1, dtype=torch.int64, device=dev)
    comm.broadcast(size, src)
    if comm.rank != src:
        data = torch.empty(int(size.item()), dtype=torch.uint8, device=dev)
    comm.broadcast(data, src)
    if comm.rank != src:
        optimizer.load_state_dict(unpack_state(data))


def optimizer_buffers(optimizer: torch.optim.Optimizer) -> List[torch.Tensor]:
    """The optimizer's floating-point state tensors (momentum, Adam moments), in a fixed order."""
    out = []
    for g in optimizer.param_groups:
        for p in g["params"]:
            st = optimizer.state.get(p, {})
            for k in sorted(st):
                v = st[k]
                if k != "step" and torch.is_tensor(v) and v.is_floating_point():
                    out.append(v)
    return out


def average(comm, tensors: List[torch.Tensor], arrivals=None) -> None:
    """Average `tensors` over all workers in place (one ring all-reduce per dtype).

    `arrivals` (`lab.strategies.arrivals.Arrivals`): the first all-reduce also carries each
    worker's arrival, so the time spent waiting for the slowest worker counts as waiting, not
    communication (in n spare slots: n * 4 bytes more; a half-precision first group, whose slots
    could not hold a time, waits at a barrier first instead)."""
    if comm.world == 1 or not tensors:
        return
    by_dtype = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for i, group in enumerate(by_dtype.values()):
        slots = arrivals if i == 0 else None
        if slots is not None and group[0].dtype not in (torch.float32, torch.float64):
            comm.barrier()
            slots = None
        n = sum(t.numel() for t in group)
        flat = torch.cat([t.detach().reshape(-1) for t in group]
                         + ([torch.zeros(comm.world, dtype=group[0].dtype, device=group[0].device)] if slots is not None else []))
        comm.note_payload(n * flat.element_size(), n * 4)
        if slots is not None:
            slots.stamp(flat[n:])
            busy = comm.ledger.comm_s
        comm.all_reduce(flat)
        if slots is not None:
            slots.split(flat[n:], comm.ledger.comm_s - busy)
        flat.div_(comm.world)
        load_flat(group, flat[:n])
