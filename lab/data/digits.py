"""scikit-learn's handwritten digits (1797 8x8 images, shipped inside the package: no download)."""
from __future__ import annotations

import numpy as np
import torch


def load_digits_arrays(test_fraction: float = 0.2, seed: int = 0):
    """(x_train, y_train, x_test, y_test) as tensors, pixels scaled to [0, 1], shape (N, 1, 8, 8).

    The split is stratified and fixed by `seed`, identical on every worker.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=test_fraction, random_state=seed, stratify=d.target)
    t = torch.from_numpy
    return t(xtr), t(ytr).long(), t(xte), t(yte).long()
