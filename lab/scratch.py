"""Neural networks and backpropagation from scratch (chapter 01).

A multilayer perceptron whose forward and backward passes are written with plain tensor
operations: no autograd, no nn.Module. The chapter builds it, checks its gradients against
autograd, trains it on the digits, and then uses `gradient_norms` to show why deep sigmoid
networks stop learning (vanishing gradients) while ReLU networks do not.

Conventions: a batch `x` is (N, features); a layer computes z = a @ W + b with W (in, out);
the loss is a mean over the batch, so every gradient is divided by N.

Example:
    >>> x, y = torch.rand(8, 784), torch.randint(0, 10, (8,))   # images, integer labels
    >>> net = ScratchMLP((784, 64, 10), activation="relu")
    >>> loss = net.train_step(x, y, lr=0.1)                      # forward, backward, update
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch

from .errors import check_choice

# Each activation with its derivative, written in terms of the pre-activation z.
ACTIVATIONS = {
    "sigmoid": (torch.sigmoid, lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z))),  # at most 1/4
    "tanh": (torch.tanh, lambda z: 1 - torch.tanh(z) ** 2),
    "relu": (lambda z: z.clamp(min=0), lambda z: (z > 0).to(z.dtype)),  # 0 or 1: nothing shrinks
}


def softmax(z: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax; subtracting the row max avoids overflow in exp without changing the result."""
    e = (z - z.max(1, keepdim=True).values).exp()
    return e / e.sum(1, keepdim=True)


class ScratchMLP:
    """A fully connected network trained by hand-written backpropagation.

    Args:
        sizes: layer widths from input to output, e.g. (784, 64, 10).
        activation: hidden activation, "sigmoid", "tanh" or "relu".
        output: "softmax" (cross-entropy on integer labels) or "sigmoid" (squared error
            0.5 * sum (o - t)^2 on float targets, the classic textbook example).
        seed, dtype: initialisation; float64 for exact gradient checks.

    Weights start as N(0, gain^2 / fan_in) (gain sqrt(2) for relu: He; 1 otherwise), which
    keeps activations at a similar scale from layer to layer; biases start at 0.
    """

    def __init__(self, sizes: Sequence[int] = (784, 64, 10), activation: str = "relu", output: str = "softmax",
                 seed: int = 0, dtype=torch.float64):
        check_choice(activation, ACTIVATIONS, "activation")
        check_choice(output, ("softmax", "sigmoid"), "output")
        self.activation, self.output = activation, output
        g = torch.Generator().manual_seed(seed)
        gain = 2 ** 0.5 if activation == "relu" else 1.0
        self.params: List[Dict[str, torch.Tensor]] = [
            {"W": torch.randn(n_in, n_out, generator=g, dtype=dtype) * gain / n_in ** 0.5,
             "b": torch.zeros(n_out, dtype=dtype)}
            for n_in, n_out in zip(sizes[:-1], sizes[1:])]

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, list]:
        """(network output, cache of (layer input a, pre-activation z) per layer for `backward`)."""
        f = ACTIVATIONS[self.activation][0]
        a, cache = x.reshape(len(x), -1).to(self.params[0]["W"].dtype), []
        for i, p in enumerate(self.params):
            z = a @ p["W"] + p["b"]
            cache.append((a, z))
            last = i == len(self.params) - 1
            a = (softmax(z) if self.output == "softmax" else torch.sigmoid(z)) if last else f(z)
        return a, cache

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (softmax output) or mean of 0.5 * sum (o - t)^2 (sigmoid output)."""
        if self.output == "softmax":
            return -out[torch.arange(len(y)), y].clamp_min(1e-300).log().mean()
        return 0.5 * ((out - y) ** 2).sum(1).mean()

    def backward(self, out: torch.Tensor, cache: list, y: torch.Tensor) -> List[Dict[str, torch.Tensor]]:
        """Gradients of `loss` with respect to every W and b, by the chain rule, last layer first.

        `delta` is dLoss/dz for the current layer; then dW = a^T delta, db = sum over the
        batch, and the previous layer's delta = (delta @ W^T) * f'(z_prev).
        """
        n = len(out)
        if self.output == "softmax":
            delta = out.clone()
            delta[torch.arange(n), y] -= 1  # softmax + cross-entropy: dLoss/dz = p - onehot(y)
        else:
            delta = (out - y) * out * (1 - out)  # squared error through the output sigmoid
        delta = delta / n  # the loss is a batch mean
        df = ACTIVATIONS[self.activation][1]
        grads = [None] * len(self.params)
        for i in reversed(range(len(self.params))):
            a, _ = cache[i]
            grads[i] = {"W": a.T @ delta, "b": delta.sum(0)}
            if i > 0:
                delta = (delta @ self.params[i]["W"].T) * df(cache[i - 1][1])
        return grads

    def step(self, grads, lr: float) -> None:
        """Plain gradient descent: p <- p - lr * grad, in place."""
        for p, g in zip(self.params, grads):
            for k in p:
                p[k] -= lr * g[k]

    def train_step(self, x, y, lr: float = 0.1) -> float:
        """One forward, backward and update; returns the loss before the update."""
        out, cache = self.forward(x)
        self.step(self.backward(out, cache, y), lr)
        return float(self.loss(out, y))


def tiny_sigmoid_net() -> Tuple[ScratchMLP, torch.Tensor, torch.Tensor]:
    """The classic 2-2-2 sigmoid network worked by hand in many textbooks and blog posts.

    Returns (net, x, t) with weights 0.15..0.55, biases 0.35 / 0.60, input (0.05, 0.10) and
    target (0.01, 0.99): the loss is 0.298371109 and dLoss/dw5 = 0.082167041.
    """
    net = ScratchMLP((2, 2, 2), activation="sigmoid", output="sigmoid")
    t64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    net.params = [{"W": t64([[0.15, 0.25], [0.20, 0.30]]), "b": t64([0.35, 0.35])},
                  {"W": t64([[0.40, 0.50], [0.45, 0.55]]), "b": t64([0.60, 0.60])}]
    return net, t64([[0.05, 0.10]]), t64([[0.01, 0.99]])


def gradient_norms(activation: str, depth: int = 10, width: int = 64, n: int = 256, seed: int = 0) -> List[float]:
    """Norm of dLoss/dW for each layer of a deep MLP at initialisation, first layer first.

    With sigmoid, every layer multiplies the backward signal by f'(z) <= 1/4, so the first
    layers get gradients orders of magnitude smaller than the last: they barely learn.
    With relu (f' is 0 or 1) the norms stay within a small factor across layers.

    Example:
        >>> s, r = gradient_norms("sigmoid"), gradient_norms("relu")
        >>> s[0] / s[-1] < 1e-3 < r[0] / r[-1]
        True
    """
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, width, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (n,), generator=g)
    net = ScratchMLP([width] * (depth + 1) + [10], activation=activation, seed=seed)
    out, cache = net.forward(x)
    return [float(gr["W"].norm()) for gr in net.backward(out, cache, y)]
