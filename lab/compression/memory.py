"""Error feedback: remember what compression dropped and send it later (chapter 07, gradient compression).

`Residual` keeps, per name, e = (gradient + e) - decompress(compress(gradient + e)); nothing a
biased compressor drops is lost, only delayed (Seide et al. 2014, Stich et al. 2018). Memories
never talk to other workers: `exchange` calls them around the collective.

When the compressor changes mid-run (`CompressionConfig.on_switch`):
    keep   residuals carry over and are added to the next gradients, which the new compressor
           compresses (and whose drops it adds to the residual) as usual;
    reset  residuals are discarded: what the old compressor dropped is never sent;
    flush  the next exchange of each name sends gradient + residual *uncompressed* (a plain
           all-reduce), once, so everything the old compressor owed is delivered in full and the
           new compressor starts from an empty memory.
"""
from __future__ import annotations

from typing import Dict, Set

import torch


class NoMemory:
    """Error feedback off: the gradient goes as is, drops are forgotten."""

    def compensate(self, tensor, name):
        return tensor

    def update(self, tensor, name, compressor, payload, ctx):
        pass

    def on_switch(self, mode: str):
        pass

    def take_flush(self, name) -> bool:
        return False

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, d: dict) -> None:
        pass


class Residual:
    """Error-feedback memory keyed by name (a parameter or a bucket such as "bucket0")."""

    def __init__(self):
        self.residuals: Dict[str, torch.Tensor] = {}
        self.flushing: Set[str] = set()  # names whose next exchange goes uncompressed

    def compensate(self, tensor, name):
        r = self.residuals.get(name)
        return tensor if r is None else tensor + r.to(tensor.device)  # loaded residuals are on CPU

    def update(self, tensor, name, compressor, payload, ctx):
        self.residuals[name] = tensor - compressor.decompress(payload, ctx)

    def reset(self):
        self.residuals.clear()
        self.flushing.clear()

    def flush(self):
        self.flushing = set(self.residuals)

    def on_switch(self, mode: str):
        """Apply `CompressionConfig.on_switch` ("keep", "reset" or "flush") when the compressor changes."""
        {"keep": lambda: None, "reset": self.reset, "flush": self.flush}[mode]()

    def take_flush(self, name) -> bool:
        """True once per flushed name: `exchange` then sends it uncompressed."""
        if name not in self.flushing:
            return False
        self.flushing.discard(name)
        return True

    def state_dict(self) -> dict:
        return {"residuals": {k: v.detach().cpu().clone() for k, v in self.residuals.items()},
                "flushing": sorted(self.flushing)}

    def load_state_dict(self, d: dict) -> None:
        self.residuals = {k: v.clone() for k, v in d.get("residuals", {}).items()}
        self.flushing = set(d.get("flushing", ()))


def build_memory(cfg, compressor):
    """A `Residual` when `cfg.error_feedback` is on or the compressor requires it, else `NoMemory`."""
    return Residual() if cfg.error_feedback or getattr(compressor, "error_feedback", False) else NoMemory()
