"""The seeds' multilayer perceptron 784-64-10 (chapter 01), for any input shape.

It flattens its input, so the input size comes from the task: 784 on 28x28 images, 64 on the
8x8 digits, 3072 on CIFAR. The same network is built by hand, without autograd, in `lab.scratch`.
"""
from __future__ import annotations

import math

from torch import nn

from . import model


class MLP(nn.Sequential):
    """Flatten -> Linear(in, hidden) -> ReLU -> Linear(hidden, n_classes).

    Example:
        >>> MLP(784, 64, 10)(torch.zeros(5, 1, 28, 28)).shape
        torch.Size([5, 10])
    """

    def __init__(self, n_in: int = 784, hidden: int = 64, n_classes: int = 10):
        super().__init__(nn.Flatten(), nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


@model("mlp", kinds=("classification",))
def mlp(spec, cfg):
    return MLP(math.prod(spec["input_shape"]), 64, spec["n_classes"])
