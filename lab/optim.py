"""Optimizers by name: sgd, momentum (SGD with momentum), adam, and learning-rate schedules.

Optimizer state survives strategy switches. A schedule is a factor of the step (so a resumed run,
or a live change of `lr`, lands on the same curve): lr(step) = optim.lr * SCHEDULES[name](step, steps,
warmup). `constant` (the default), `cosine` (to 0 at the last step, as torch's CosineAnnealingLR
with T_max = steps) and `linear` (to 0), each after `warmup_steps` of linear warm-up.
"""
from __future__ import annotations

import math

import torch

from .registry import Registry

OPTIMIZERS = Registry("optimizer")
OPTIMIZERS.register("sgd")(lambda params, c: torch.optim.SGD(params, lr=c.lr, weight_decay=c.weight_decay))
OPTIMIZERS.register("momentum")(lambda params, c: torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay))
OPTIMIZERS.register("adam")(lambda params, c: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay))


SCHEDULES = Registry("schedule")


def _warm(step: int, warmup: int) -> float:
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


@SCHEDULES.register("constant")
def constant(step: int, steps: int, warmup: int = 0) -> float:
    return _warm(step, warmup)


@SCHEDULES.register("cosine")
def cosine(step: int, steps: int, warmup: int = 0) -> float:
    if step < warmup:
        return _warm(step, warmup)
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


@SCHEDULES.register("linear")
def linear(step: int, steps: int, warmup: int = 0) -> float:
    if step < warmup:
        return _warm(step, warmup)
    return 1.0 - (step - warmup) / max(1, steps - warmup)


def lr_at(cfg, step: int, steps: int) -> float:
    """The learning rate at `step` of a run of `steps` under OptimConfig `cfg`."""
    return cfg.lr * SCHEDULES.get(cfg.schedule)(step, steps, cfg.warmup_steps)


def make_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """Build the optimizer named by `cfg.name` (an OptimConfig) over the trainable parameters."""
    return OPTIMIZERS.build(cfg.name, [p for p in model.parameters() if p.requires_grad], cfg)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr
