"""Optimizers by name: sgd, momentum (SGD with momentum), adam, and learning-rate schedules.

Optimizer state survives strategy switches. A schedule is a factor of the step (so a resumed run,
or a live change of `lr`, lands on the same curve): lr(step) = optim.lr * SCHEDULES[name](step, steps,
warmup). `constant` (the default), `cosine` (to 0 at the last step, as torch's CosineAnnealingLR
with T_max = steps) and `linear` (to 0), each after `warmup_steps` of linear warm-up.
Large batches (chapter 13): `scale_lr = "linear"` multiplies lr by global batch / `base_batch`
(the linear scaling rule of Goyal et al. 2017, the global batch being batch_size x workers: one
update of sync or ps averages that many samples); pair it with `warmup_steps`.
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


SCALINGS = Registry("scale_lr")  # name -> f(global_batch, base_batch) -> factor on lr
SCALINGS.register("none")(lambda global_batch, base_batch: 1.0)
# Goyal et al. 2017, "Accurate, Large Minibatch SGD": k times the batch, k times the learning rate
# (with a warm-up, since the first steps cannot take the full k-fold lr)
SCALINGS.register("linear")(lambda global_batch, base_batch: global_batch / base_batch)


def scaled_lr(cfg, global_batch: int = None) -> float:
    """`cfg.lr` under `cfg.scale_lr` for a global batch (per-worker batch x workers; None: unscaled).

    Example (chapter 13): base lr 0.05 tuned at a batch of 32, 8 workers of 32 each:
        >>> from lab.config import OptimConfig
        >>> scaled_lr(OptimConfig(lr=0.05, scale_lr="linear", base_batch=32), 8 * 32)
        0.4
    """
    if global_batch is None:
        return cfg.lr
    return cfg.lr * SCALINGS.get(cfg.scale_lr)(global_batch, cfg.base_batch)


def lr_at(cfg, step: int, steps: int, global_batch: int = None) -> float:
    """The learning rate at `step` of a run of `steps` under OptimConfig `cfg`, scaled for
    `global_batch` (samples per step over all workers) when `cfg.scale_lr` says so."""
    return scaled_lr(cfg, global_batch) * SCHEDULES.get(cfg.schedule)(step, steps, cfg.warmup_steps)


def make_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """Build the optimizer named by `cfg.name` (an OptimConfig) over the trainable parameters."""
    return OPTIMIZERS.build(cfg.name, [p for p in model.parameters() if p.requires_grad], cfg)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr
