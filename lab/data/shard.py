"""Splitting a dataset across workers: IID (disjoint random) or label-skewed (Dirichlet)."""
from __future__ import annotations

from typing import List

import numpy as np


def iid_shards(n: int, world: int, seed: int) -> List[np.ndarray]:
    """Disjoint, equal-size (up to one) random index shards, the same for every caller with `seed`."""
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(s) for s in np.array_split(perm, world)]


def dirichlet_shards(labels: np.ndarray, world: int, alpha: float, seed: int, min_size: int = 2) -> List[np.ndarray]:
    """Label-skewed shards: each class is split across workers with Dirichlet(alpha) proportions.

    Smaller `alpha` means each worker sees fewer classes (federated-learning style). Shards are
    disjoint and cover every index; resampled until every worker has at least `min_size` items.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    for _ in range(100):
        shards = [[] for _ in range(world)]
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            p = rng.dirichlet([alpha] * world)
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
            for w, part in enumerate(np.split(idx, cuts)):
                shards[w].extend(part.tolist())
        if min(len(s) for s in shards) >= min_size:
            break
    return [np.sort(np.array(s, dtype=np.int64)) for s in shards]


def make_shards(labels, world: int, how: str, alpha: float, seed: int) -> List[np.ndarray]:
    if how == "dirichlet":
        return dirichlet_shards(labels, world, alpha, seed)
    return iid_shards(len(labels), world, seed)
