"""Tasks: what a worker computes a loss on (classification, language modelling, control).

A task owns its data shard and knows how to turn the model and one batch into a loss, and how
to evaluate the model on held-out data. The training loop (`lab.train`) knows nothing else about
the problem, so the same strategies train CNNs, LSTMs and agents.

`TASKS.build(cfg.data.name, cfg: DataConfig, dtype)` -> a Task: the data knob names a task (its
data and its loss), and each factory carries its `kind` (classification, language, control).
Raw data loaders live in `lab.data` and know nothing of tasks.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, Tuple

import torch
from torch import nn

from ..errors import check
from ..registry import Registry

TASK_KINDS = ("classification", "language", "control")

TASKS = Registry("data")


def task(name: str, kind: str = "classification"):
    """Register a task factory `f(cfg: DataConfig, dtype) -> Task` under a data name."""
    def deco(fn):
        fn.kind = kind
        return TASKS.register(name)(fn)
    return deco


class Task:
    """Protocol every task follows (subclass it).

    Attributes:
        kind: one of TASK_KINDS; models declare which kinds they accept.
        unit: what `n` in `loss` counts ("samples", "tokens", "env_steps"), for throughput.
        spec: what a model needs to know to adapt (input_shape, n_classes, vocab_size, ...).
    """
    kind: str = "classification"
    unit: str = "samples"
    spec: Dict[str, Any] = {}

    def batches(self, rank: int, world: int, batch_size: int) -> Iterator[Any]:
        """An endless stream of this worker's batches (its own shard), reproducible by seed."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch) -> Tuple[torch.Tensor, int, Dict[str, float]]:
        """(scalar loss to backpropagate, units processed, extra per-step metrics)."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> Dict[str, float]:
        """Held-out metrics, e.g. {"test_acc": 0.97, "test_loss": 0.1}."""
        raise NotImplementedError


def check_compatible(data: str, model: str) -> None:
    """Reject a model that cannot learn the data's task (e.g. an LSTM on images)."""
    from ..models import MODELS
    kind = getattr(TASKS.get(data), "kind", "classification")
    kinds = getattr(MODELS.get(model), "kinds", ("classification",))
    check(kind in kinds, "model", f"a model for {kind} data ({', '.join(n for n in MODELS.names() if kind in getattr(MODELS.get(n), 'kinds', ()))})", model)


from . import classification, language  # noqa: E402,F401  (registers "digits", "cifar10" and "text")
from . import cartpole  # noqa: E402,F401  (registers "cartpole", chapter 10)
from . import talk  # noqa: E402,F401  (registers "cartpole_talk", chapter 10b)
