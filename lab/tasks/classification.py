"""Image (or any tensor) classification: cross-entropy on a shard, accuracy on the held-out split."""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F

from ..data.cifar import load_cifar10
from ..data.digits import load_digits_arrays
from ..data.shard import make_shards
from . import Task, task


class ClassificationTask(Task):
    """Classification over in-memory tensors.

    Args:
        x_train, y_train, x_test, y_test: float images (N, C, H, W) and int64 labels.
        shard, alpha, seed: how the training set is split across workers (see lab.data.shard).
        classes: optional class names for reports.
    """
    kind = "classification"
    unit = "samples"

    def __init__(self, x_train, y_train, x_test, y_test, shard="iid", alpha=0.5, seed=0, classes=None):
        self.x_train, self.y_train = x_train, y_train
        self.x_test, self.y_test = x_test, y_test
        self.shard, self.alpha, self.seed = shard, alpha, seed
        n_classes = int(max(y_train.max(), y_test.max())) + 1
        self.classes = list(classes) if classes is not None else [str(i) for i in range(n_classes)]
        self.spec = {"input_shape": tuple(x_train.shape[1:]), "n_classes": n_classes}

    def shard_indices(self, rank: int, world: int) -> np.ndarray:
        return make_shards(self.y_train.numpy(), world, self.shard, self.alpha, self.seed)[rank]

    def batches(self, rank, world, batch_size):
        """Endless epochs over this worker's shard, reshuffled each epoch (seeded by rank, epoch).

        `batch_size` may be a callable returning the current size, so it can change mid-run.
        """
        idx = torch.from_numpy(self.shard_indices(rank, world))
        g = torch.Generator().manual_seed(self.seed * 1000 + rank)
        size = batch_size if callable(batch_size) else (lambda: batch_size)
        while True:
            order = idx[torch.randperm(len(idx), generator=g)]
            if len(order) < size():  # a shard smaller than a batch: use all of it
                yield self.x_train[order], self.y_train[order]
                continue
            pos = 0
            while pos + size() <= len(order):  # full batches only: every step sees the same size
                b = order[pos:pos + size()]
                pos += len(b)
                yield self.x_train[b], self.y_train[b]

    def to(self, device, dtype):
        self.x_train, self.x_test = self.x_train.to(device, dtype), self.x_test.to(device, dtype)
        self.y_train, self.y_test = self.y_train.to(device), self.y_test.to(device)
        return self

    def loss(self, model, batch):
        x, y = batch
        out = model(x)
        return F.cross_entropy(out, y), len(y), {}

    @torch.no_grad()
    def predict(self, model, x=None, batch=1024):
        x = self.x_test if x is None else x
        was = model.training
        model.eval()
        out = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
        model.train(was)
        return out

    @torch.no_grad()
    def evaluate(self, model) -> Dict[str, float]:
        out = self.predict(model)
        return {"test_acc": (out.argmax(1) == self.y_test).double().mean().item(),
                "test_loss": F.cross_entropy(out, self.y_test).item()}


@task("digits", kind="classification")
def digits_task(cfg, dtype=torch.float32):
    xtr, ytr, xte, yte = load_digits_arrays(cfg.test_fraction, cfg.seed)
    t = ClassificationTask(xtr, ytr, xte, yte, shard=cfg.shard, alpha=cfg.alpha, seed=cfg.seed)
    return t.to("cpu", dtype)


@task("cifar10", kind="classification")
def cifar10_task(cfg, dtype=torch.float32):
    xtr, ytr, xte, yte, names = load_cifar10(cfg.path)
    t = ClassificationTask(xtr, ytr, xte, yte, shard=cfg.shard, alpha=cfg.alpha, seed=cfg.seed, classes=names)
    return t.to("cpu", dtype)
