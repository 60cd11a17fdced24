"""One worker's compression: its compressor and error-feedback memory, held together (chapter 07).

The trainer makes one `Compression` per worker (`ctx.compression`) and keeps it for the whole
run, across strategy switches: the residuals a compressor dropped are this worker's debt, not a
strategy's. Strategies only use it (`exchange` for collectives, `wire` for a parameter server);
when the run's compressor changes, `switch` applies `CompressionConfig.on_switch` to the memory
(keep, reset or flush: see `lab.compression.memory`). Its `state_dict` goes into the worker's
checkpoint piece, so a resumed run still owes what it owed.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch

from . import COMPRESSORS
from .exchange import exchange, exchange_many
from .memory import build_memory
from .wire import WireCodec


class Compression:
    """A worker's compressor plus its memory.

    Args:
        cfg: the run's `CompressionConfig` (its `name` picks the compressor).

    Example:
        >>> ctx.compression = Compression(cfg.strategy.compression)
        >>> avg = ctx.compression.exchange(flat_grad, "bucket0", ctx.comm)
        >>> ctx.compression.switch(new_cfg)   # mid-run: residuals kept, reset or flushed
    """

    def __init__(self, cfg):
        cfg = copy.deepcopy(cfg)  # the run's config is edited in place by live changes: `switch` compares
        self.cfg = cfg
        self.compressor = COMPRESSORS.build(cfg.name, cfg)
        self.memory = build_memory(cfg, self.compressor)

    @property
    def identity(self) -> bool:
        """True when gradients travel as they are (the `none` compressor)."""
        return self.compressor.identity

    def exchange(self, tensor: torch.Tensor, name: str, comm) -> torch.Tensor:
        """Average `tensor` over the workers, compressed (see `lab.compression.exchange.exchange`)."""
        return exchange(tensor, name, self.compressor, self.memory, comm)

    def exchange_many(self, items, comm, arrivals=None) -> list:
        """`exchange` of several (tensor, name) pairs in as few collectives as their payloads allow
        (see `lab.compression.exchange.exchange_many`)."""
        return exchange_many(items, self.compressor, self.memory, comm, arrivals)

    def wire(self, like: torch.Tensor, strategy: str) -> Optional[WireCodec]:
        """A codec for gradients sent point to point to a server, or None when uncompressed."""
        return None if self.identity else WireCodec(self.compressor, self.memory, like, strategy)

    def switch(self, cfg) -> None:
        """The run's compression settings changed: a new compressor; the memory follows `cfg.on_switch`
        (a fresh one when error feedback was switched on or off)."""
        if cfg == self.cfg:
            return
        cfg = copy.deepcopy(cfg)
        compressor = COMPRESSORS.build(cfg.name, cfg)
        memory = build_memory(cfg, compressor)
        if type(memory) is type(self.memory):
            self.memory.on_switch(cfg.on_switch)
        else:
            self.memory = memory
        self.cfg, self.compressor = cfg, compressor

    def state_dict(self) -> dict:
        """The residuals (and the compressor's own state, e.g. PowerSGD's warm start) as CPU tensors."""
        return {"compressor": self.cfg.name, "memory": self.memory.state_dict(),
                "state": self.compressor.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        """Restore `state_dict`'s output; the compressor's own state only if it is the same compressor."""
        if not d:
            return
        self.memory.load_state_dict(d.get("memory", {}))
        if d.get("compressor") == self.cfg.name:
            self.compressor.load_state_dict(d.get("state", {}))
