"""lab.metrics (chapters 02 and 03) against scikit-learn on random labels."""
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from lab.metrics import accuracy, confusion_matrix, macro_f1, perplexity, precision_recall_f1


@pytest.fixture(params=[0, 1, 2])
def labels(request):
    """Random true / predicted labels over 7 classes; seed 2 never predicts class 6."""
    rng = np.random.default_rng(request.param)
    k = 7
    y = rng.integers(0, k, 500)
    p = np.where(rng.random(500) < 0.6, y, rng.integers(0, k, 500))  # 60% right, like a weak model
    if request.param == 2:
        p[p == 6] = 0
    return y, p, k


def test_accuracy(labels):
    y, p, _ = labels
    assert accuracy(y, p) == pytest.approx(sk.accuracy_score(y, p), abs=1e-12)
    assert accuracy(torch.from_numpy(y), torch.from_numpy(p)) == pytest.approx(sk.accuracy_score(y, p))


def test_confusion_matrix(labels):
    y, p, k = labels
    np.testing.assert_array_equal(confusion_matrix(y, p, k), sk.confusion_matrix(y, p, labels=range(k)))


def test_precision_recall_f1_per_class(labels):
    y, p, k = labels
    ours = precision_recall_f1(y, p, k)
    ref = sk.precision_recall_fscore_support(y, p, labels=range(k), zero_division=0)
    for name, r in zip(("precision", "recall", "f1", "support"), ref):
        np.testing.assert_allclose(ours[name], r, atol=1e-12, err_msg=name)
    assert macro_f1(y, p, k) == pytest.approx(sk.f1_score(y, p, labels=range(k), average="macro", zero_division=0))


def test_logits_are_turned_into_predictions():
    logits = torch.tensor([[2.0, 0.1], [0.0, 3.0], [1.0, 0.5]])
    assert accuracy([0, 1, 1], logits) == pytest.approx(2 / 3)
    assert confusion_matrix([0, 1, 1], logits).tolist() == [[1, 0], [1, 1]]


def test_perplexity_is_exp_of_mean_cross_entropy():
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(size=(200, 5)))
    y = torch.from_numpy(rng.integers(0, 5, 200))
    ce = torch.nn.functional.cross_entropy(logits, y).item()
    log_loss = sk.log_loss(y.numpy(), torch.softmax(logits, 1).numpy(), labels=range(5))
    assert perplexity(ce) == pytest.approx(math.exp(log_loss), rel=1e-9)
    assert perplexity(math.log(65)) == pytest.approx(65)  # uniform over 65 characters
