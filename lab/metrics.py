"""Evaluation metrics for the chapters: accuracy, per-class precision / recall / F1, the confusion
matrix (chapter 02, CNN image classification) and perplexity (chapter 03, RNN text generation).

Every function accepts torch tensors, numpy arrays or lists of integer labels and returns numpy
values, so a notebook can print or plot them directly. They follow scikit-learn's conventions
(rows of the confusion matrix are true classes; a class never predicted has precision 0), and the
tests check them against scikit-learn.

Example:
    >>> y_true, y_pred = [0, 1, 2, 2], [0, 2, 2, 2]
    >>> accuracy(y_true, y_pred)
    0.75
    >>> precision_recall_f1(y_true, y_pred)["recall"].tolist()
    [1.0, 0.0, 1.0]
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np
import torch


def _labels(y) -> np.ndarray:
    """Integer labels as a flat numpy array; logits (N, C) are turned into their argmax."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim == 2:  # scores / logits: the predicted class is the largest one
        y = y.argmax(1)
    return y.astype(np.int64).ravel()


def accuracy(y_true, y_pred) -> float:
    """Share of predictions equal to the true label (chapter 02).

    Args:
        y_true: true labels (N,).
        y_pred: predicted labels (N,) or scores / logits (N, C).
    Returns:
        a float in [0, 1].
    """
    t, p = _labels(y_true), _labels(y_pred)
    return float((t == p).mean()) if len(t) else 0.0


def confusion_matrix(y_true, y_pred, n_classes: Optional[int] = None) -> np.ndarray:
    """Counts C[i, j] of samples of true class i predicted as class j (chapter 02).

    Args:
        y_true, y_pred: labels as for `accuracy`.
        n_classes: matrix size; by default one more than the largest label seen.
    Returns:
        an (n_classes, n_classes) int64 array; rows sum to the class supports.
    """
    t, p = _labels(y_true), _labels(y_pred)
    k = n_classes if n_classes is not None else int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    # one bincount over the flattened (true, predicted) pair index: no Python loop over samples
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def precision_recall_f1(y_true, y_pred, n_classes: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support (chapter 02).

    A class with no prediction (or no sample) gets precision (or recall) 0, as scikit-learn's
    `zero_division=0`, so a collapsed model shows up as zeros rather than NaNs.

    Returns:
        {"precision", "recall", "f1", "support"}: arrays of length n_classes.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes).astype(np.float64)
    tp = np.diag(cm)
    predicted, support = cm.sum(0), cm.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def macro_f1(y_true, y_pred, n_classes: Optional[int] = None) -> float:
    """Unweighted mean of the per-class F1 scores: each class counts the same, however rare."""
    return float(precision_recall_f1(y_true, y_pred, n_classes)["f1"].mean())


def perplexity(mean_cross_entropy: float) -> float:
    """exp(mean cross-entropy in nats per token) (chapter 03).

    The effective number of equally likely next characters the model hesitates between:
    a uniform guess over V characters has perplexity V, a perfect model 1.

    Example:
        >>> round(perplexity(math.log(65)), 6)
        65.0
    """
    return float(math.exp(min(float(mean_cross_entropy), 700.0)))  # cap: exp overflows past ~709
