"""`sync` overlaps its bucket all-reduces with backward, as DDP does (lab.strategies.overlap, issue 12).

Overlap changes when bytes travel, never what arrives: with several buckets the run equals the one
without overlap exactly (float64), the ledger counts the same bytes, and the time the early buckets
were in flight during backward is reported apart (`overlap_s`), not as communication.
"""
import pytest
import torch

from lab.config import RunConfig
from lab.procs import Group, train

BASE = RunConfig(steps=6, eval_every=10**6, checkpoint_every=10**6).replace(**{
    "data.name": "digits", "model.name": "mlp", "model.dtype": "float64", "model.dropout": 0.0,
    "optim.name": "sgd", "optim.lr": 0.1, "strategy.name": "sync", "strategy.bucket_mb": 0.02})
BYTES = ("bytes_sent", "bytes_recv", "messages", "payload_bytes", "raw_bytes", "framing_bytes")


def _buckets(trainer):
    return len(trainer.strategy.averager.buckets.groups)


@pytest.fixture(scope="module")
def group():
    with Group(2, timeout=120) as g:
        yield g


@pytest.fixture(scope="module")
def runs(group):
    return {flag: train(BASE.replace(**{"strategy.overlap": flag}), group, probe=_buckets) for flag in (True, False)}


def test_overlap_is_on_by_default_and_needs_two_buckets(runs):
    assert RunConfig().strategy.overlap is True
    assert runs[True][0]["probe"] >= 2 and runs[False][0]["probe"] >= 2


def test_overlap_gives_the_same_model_and_bytes(runs):
    for rank in range(2):
        on, off = runs[True][rank], runs[False][rank]
        assert all(torch.equal(on["model"][k], off["model"][k]) for k in off["model"])
        assert [[r[k] for k in BYTES] for r in on["records"]] == [[r[k] for k in BYTES] for r in off["records"]]


def test_overlapped_time_is_reported_apart(runs):
    on = [r for out in runs[True] for r in out["records"]]
    off = [r for out in runs[False] for r in out["records"]]
    assert all(r["overlap_s"] == 0.0 for r in off)
    assert all(r["overlap_s"] >= 0.0 for r in on) and sum(r["overlap_s"] for r in on) > 0.0


def test_clipping_after_backward_starts_nothing_early(group):
    cfg = BASE.replace(**{"optim.clip_grad_norm": 0.5})
    on = train(cfg, group)
    off = train(cfg.replace(**{"strategy.overlap": False}), group)
    assert all(torch.equal(on[0]["model"][k], off[0]["model"][k]) for k in off[0]["model"])
    assert all(r["overlap_s"] == 0.0 for r in on[0]["records"])
