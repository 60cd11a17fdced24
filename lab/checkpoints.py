"""Checkpoints: one piece per worker, one file per run (chapter 11, faults and recovery).

Each worker's `Trainer.checkpoint` is its **piece**: the step, the config, its model and optimizer,
its strategy's state (`Strategy.state_dict`, e.g. the parameter server's on rank 0), its
compression state (error-feedback residuals) and its random number generators' states (dropout
masks: a resumed run draws the masks the uninterrupted one would have drawn). `runs/<id>/checkpoint.pt` holds every rank's piece
under "workers", with rank 0's piece also at the top level (so `ck["model"]` and `ck["step"]` read
as before; torch.save stores shared tensors once). On resume each rank gets its own piece back.
"""
from __future__ import annotations

import copy
from typing import List

import torch


def combine(pieces: List[dict]) -> dict:
    """One checkpoint from every rank's piece (all taken at the same step), ordered by rank."""
    pieces = sorted(pieces, key=lambda p: p.get("rank", 0))
    steps = {p["step"] for p in pieces}
    if len(steps) != 1:
        raise ValueError(f"checkpoint pieces from different steps: {sorted(steps)}")
    return {**pieces[0], "workers": pieces}


def piece(ck: dict, rank: int, world: int) -> dict:
    """This rank's piece of a checkpoint (a whole one from `combine`, or already a piece).

    A checkpoint saved by another number of workers, or an older one holding rank 0's state only,
    gives every rank rank 0's piece; other ranks then start with no error-feedback residuals
    (those were rank 0's own debt) but keep the state all ranks share (the strategy's counters,
    the compressor's seeds).
    """
    workers = ck.get("workers")
    if workers and len(workers) == world:
        return workers[rank]
    mine = {k: v for k, v in ck.items() if k != "workers"}
    if rank != 0 and mine.get("compression"):
        mine["compression"] = {**mine["compression"], "memory": {}}
    return mine


def get_rng(device="cpu") -> dict:
    """This process's torch RNG states: the CPU generator's, and the GPU's when training on one."""
    out = {"cpu": torch.get_rng_state()}
    if str(device).startswith("cuda"):
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def set_rng(saved, device="cpu") -> None:
    """Restore what `get_rng` saved (nothing for checkpoints that have no RNG state)."""
    if not saved:
        return
    torch.set_rng_state(saved["cpu"])
    if "cuda" in saved and str(device).startswith("cuda"):
        torch.cuda.set_rng_state(saved["cuda"], device)


def to_cpu(state):
    """A deep copy of a (nested) state with every tensor on the CPU, safe to ship and save."""
    if torch.is_tensor(state):
        return state.detach().cpu().clone()
    if isinstance(state, dict):
        return {k: to_cpu(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(to_cpu(v) for v in state)
    return copy.deepcopy(state)
