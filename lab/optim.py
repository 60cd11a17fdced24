"""Optimizers by name: sgd, momentum (SGD with momentum), adam. Their state survives strategy switches."""
from __future__ import annotations

import torch

from .registry import Registry

OPTIMIZERS = Registry("optimizer")
OPTIMIZERS.register("sgd")(lambda params, c: torch.optim.SGD(params, lr=c.lr, weight_decay=c.weight_decay))
OPTIMIZERS.register("momentum")(lambda params, c: torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay))
OPTIMIZERS.register("adam")(lambda params, c: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay))


def make_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """Build the optimizer named by `cfg.name` (an OptimConfig) over the trainable parameters."""
    return OPTIMIZERS.build(cfg.name, [p for p in model.parameters() if p.requires_grad], cfg)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr
