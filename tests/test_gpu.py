"""GPU workers (issue 12): every strategy and compressor on CUDA, sync equal to one process, the same bytes.

Marked `gpu` and skipped with one line where torch sees no GPU (the CPU side of the same checks is
tests/test_devices.py). `scripts/gpu-check.sh` runs this file and the GPU rows of the bench.

Two workers share GPU 0 (`device="cuda:0"`): the data plane is gloo, which moves CUDA tensors in
all-reduce and broadcast and is host-staged by `lab.comm.Comm` for the rest. With two GPUs or
more, two workers with a GPU each run NCCL as well.
"""
import os

import pytest
import torch

from lab.config import RunConfig
from lab.train import build

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (no GPU visible to torch here)")]

STRATEGIES = ["sync", "ps", "async", "ssp", "local", "gossip", "diloco"]
COMPRESSORS = ["none", "fp16", "topk", "powersgd"]
STEPS = 20


@pytest.fixture(scope="module")
def shared(cluster_factory):
    """Two workers on GPU 0 (gloo data plane, host staging)."""
    return cluster_factory(2, device="cuda:0", cluster_id=f"test-gpu-shared-{os.getpid()}")


@pytest.fixture(scope="module")
def cpu(cluster_factory):
    return cluster_factory(2, device="cpu", cluster_id=f"test-gpu-cpu-{os.getpid()}")


def _cfg(runs_dir, strategy, compressor, **changes):
    cfg = RunConfig(steps=STEPS, eval_every=STEPS, runs_dir=runs_dir).replace(**{"strategy.name": strategy})
    if compressor != "none":
        cfg = cfg.replace(**{"strategy.compression.name": compressor})
    return cfg.replace(**changes)


@pytest.mark.parametrize("compressor", COMPRESSORS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_and_compressor_trains_on_a_shared_gpu(shared, runs_dir, strategy, compressor):
    if compressor != "none" and strategy in ("local", "gossip", "diloco"):
        pytest.skip(f"{strategy} exchanges parameters: no gradient compressor")
    run = shared.train(_cfg(runs_dir, strategy, compressor)).wait(timeout=300)
    s = run.summary()
    assert s["status"] == "finished", s.get("error")
    assert s["steps"] == STEPS
    assert all(r["loss"] == r["loss"] for r in run.records)   # no NaN
    assert s["data_plane"].startswith("gloo, host-staged all-gather")
    for w in s["per_worker"].values():
        assert w["device"] == "cuda:0" and w["device_name"] != "cpu"
        assert w["mem_peak_mb"] is not None and w["mem_peak_mb"] > 0


def _reference(cfg, world, device):
    """Single-process training on the concatenation of every worker's batch, on `device`."""
    task, model, opt = build(cfg, device)
    streams = [task.batches(r, world, cfg.data.batch_size) for r in range(world)]
    for _ in range(cfg.steps):
        parts = [next(s) for s in streams]
        loss, _, _ = task.loss(model, (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def test_sync_on_cuda_equals_the_single_process(shared, runs_dir):
    cfg = _cfg(runs_dir, "sync", "none", **{"model.dropout": 0.0, "optim.name": "sgd", "optim.lr": 0.1})
    run = shared.train(cfg).wait(timeout=300)
    ref = _reference(cfg, 2, "cuda:0")
    for rank in range(2):
        got = shared.call(rank, "model_state", run.id)
        diff = max((got[k] - ref[k]).abs().max().item() for k in ref)
        assert diff <= 5e-4, f"rank {rank}: largest parameter difference {diff} (float32)"


@pytest.mark.parametrize("strategy,compressor", [("sync", c) for c in COMPRESSORS] + [("ps", "none"), ("ps", "topk")])
def test_the_ledger_counts_the_same_bytes_as_on_the_cpu(shared, cpu, runs_dir, strategy, compressor):
    cfg = _cfg(runs_dir, strategy, compressor, steps=5, eval_every=5)
    keys = ("bytes_sent", "bytes_recv", "messages", "payload_bytes", "raw_bytes", "framing_bytes")
    got = {}
    for name, cluster in (("gpu", shared), ("cpu", cpu)):
        run = cluster.train(cfg).wait(timeout=300)
        got[name] = sorted((r["rank"], r["step"], *(r[k] for k in keys)) for r in run.records)
    assert got["gpu"] == got["cpu"]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs (one per worker: NCCL)")
def test_a_gpu_per_worker_runs_on_nccl(cluster_factory, runs_dir):
    c = cluster_factory(2, device="cuda", cluster_id=f"test-gpu-nccl-{os.getpid()}")
    for strategy, compressor in (("sync", "none"), ("sync", "powersgd"), ("ps", "topk"), ("async", "none")):
        s = c.train(_cfg(runs_dir, strategy, compressor)).wait(timeout=300).summary()
        assert s["status"] == "finished" and s["data_plane"] == "nccl", (strategy, compressor, s.get("error"))
    assert c.healthy()  # the health check's CPU tensor goes through the gloo control plane
