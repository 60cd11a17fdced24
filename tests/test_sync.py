"""The `sync` strategy and runs on a real 2-engine cluster."""
import dataclasses
import json
import time

import pytest
import torch

from lab.config import RunConfig
from lab.errors import WorkerError
from lab.runs import load_run
from lab.train import build

N_PARAMS = 72_842  # the CNN on 8x8 digits


def reference_training(cfg: RunConfig, world: int) -> dict:
    """Single-process training on the concatenation of every worker's batch."""
    task, model, opt = build(cfg)
    streams = [task.batches(r, world, cfg.data.batch_size) for r in range(world)]
    for _ in range(cfg.steps):
        parts = [next(s) for s in streams]
        x = torch.cat([p[0] for p in parts])
        y = torch.cat([p[1] for p in parts])
        loss, _, _ = task.loss(model, (x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.state_dict()


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("adam", 0.003)])
def test_sync_reproduces_single_process_training(cluster2, runs_dir, optimizer, lr):
    cfg = RunConfig(steps=20, runs_dir=runs_dir).replace(**{
        "model.dtype": "float64", "model.dropout": 0.0, "optim.name": optimizer, "optim.lr": lr})
    run = cluster2.train(cfg).wait(timeout=120)
    ref = reference_training(cfg, world=2)
    for rank in range(2):
        got = cluster2.call(rank, "model_state", run.id)
        diff = max((got[k] - ref[k]).abs().max().item() for k in ref)
        assert diff <= 1e-6, f"rank {rank}: largest parameter difference {diff}"
    # and training really moved the weights (the comparison is not between two untouched models)
    init = build(cfg)[1].state_dict()
    assert max((ref[k] - init[k]).abs().max().item() for k in ref) > 1e-3


def test_sync_reaches_95_percent_and_records_are_complete(cluster2, runs_dir):
    cfg = RunConfig(steps=300, runs_dir=runs_dir)
    run = cluster2.train(cfg).wait(timeout=300)
    s = run.summary()
    assert s["test_acc"] >= 0.95, s
    # every worker's every step, exactly once
    for rank in range(2):
        steps = sorted(r["step"] for r in run.records if r["rank"] == rank)
        assert steps == list(range(300))
    # test accuracy at intervals, on rank 0
    assert [r["step"] for r in run.records if "test_acc" in r] == list(range(24, 300, 25))
    # the byte ledger: ring all-reduce of the fp32 gradient, 2 (n-1)/n * 4 bytes per parameter
    # (plus one 4-byte arrival-time slot per worker riding in the first bucket)
    assert {r["bytes_sent"] for r in run.records} == {2 * 1 / 2 * 4 * (N_PARAMS + 2)}
    # (a step's comm_s may round to 0 when its wait estimate, from arrival clocks, takes it all)
    assert all(r["compute_s"] > 0 and r["comm_s"] >= 0 and r["wait_s"] >= 0 for r in run.records)
    assert all(w["comm_s"] > 0 for w in s["per_worker"].values())
    # saved, and reloads to the same thing
    again = load_run(run.path)
    assert again.records == json.loads(json.dumps(run.records)) and again.cfg == cfg
    assert again.meta["status"] == "finished" and again.summary()["test_acc"] == s["test_acc"]
    ck = torch.load(run.path / "checkpoint.pt")
    assert ck["step"] == 300 and set(ck["model"]) == set(build(cfg)[1].state_dict())


def test_lr_change_mid_run_reaches_every_worker_at_one_step(cluster2, runs_dir):
    run = cluster2.train(RunConfig(steps=400, runs_dir=runs_dir))
    while run.step < 20:
        run.poll()
        time.sleep(0.05)
    eff = run.set(lr=0.0005)
    assert eff is not None and eff >= 20
    run.wait(timeout=300)
    marked = [r for r in run.records if "changes" in r]
    assert sorted(r["rank"] for r in marked) == [0, 1]
    assert {r["step"] for r in marked} == {eff}
    for r in run.records:
        assert r["lr"] == (0.0005 if r["step"] >= eff else 0.003)
    assert run.meta["events"][0]["step"] == eff
    assert json.loads((run.path / "meta.json").read_text())["events"][0]["changes"] == {"lr": 0.0005}


def test_lr_schedule_is_followed_and_a_live_lr_change_rescales_it(cluster2, runs_dir):
    """Cosine with warm-up: every record's lr is lr_at(step); `lr` set mid-run scales the rest."""
    from lab.optim import lr_at
    cfg = RunConfig(steps=300, runs_dir=runs_dir).replace(schedule="cosine", warmup_steps=30)
    run = cluster2.train(cfg)
    while run.step < 40:
        run.poll()
        time.sleep(0.05)
    eff = run.set(lr=0.001)
    run.wait(timeout=300)
    assert eff is not None and len(run.records) == 2 * 300
    for r in run.records:
        base = dataclasses.replace(cfg.optim, lr=0.001) if r["step"] >= eff else cfg.optim
        assert r["lr"] == pytest.approx(lr_at(base, r["step"], 300), rel=1e-12), r["step"]
    first = min(run.records, key=lambda r: r["step"])
    assert first["lr"] == pytest.approx(0.003 / 30)  # warm-up starts at lr / warmup_steps


def test_pause_resume_stop(cluster2, runs_dir):
    run = cluster2.train(RunConfig(steps=100_000, runs_dir=runs_dir))
    while run.step < 5:
        run.poll()
        time.sleep(0.05)
    at = run.pause()
    time.sleep(0.5)
    run.poll()
    n = len(run.records)
    time.sleep(0.5)
    run.poll()
    assert len(run.records) == n and max(r["step"] for r in run.records) == at - 1
    run.resume()
    time.sleep(0.5)
    run.poll()
    assert len(run.records) > n
    stopped_at = run.stop()
    run.wait(timeout=30)
    assert run.status == "stopped" and max(r["step"] for r in run.records) == stopped_at - 1


def test_bad_knob_on_a_run_is_rejected_before_reaching_workers(cluster2, runs_dir):
    from lab.errors import ConfigError
    with pytest.raises(ConfigError, match="^lr must be"):
        cluster2.train(RunConfig(runs_dir=runs_dir), lr=-1)
    run = cluster2.train(RunConfig(steps=100_000, runs_dir=runs_dir))
    with pytest.raises(ConfigError, match="^batch_size must be"):
        run.set(batch_size=0)
    run.stop()
    run.wait(timeout=30)


def test_dead_worker_is_a_clear_error_within_seconds(cluster_factory, runs_dir):
    cluster = cluster_factory(2)
    run = cluster.train(RunConfig(steps=100_000, runs_dir=runs_dir))
    while run.step < 5:
        run.poll()
        time.sleep(0.05)
    from lab.remote import call
    cluster.client[cluster.engine_ids[1]].apply_async(call, "kill_self")  # a crash, as os._exit
    t0 = time.time()
    with pytest.raises(WorkerError, match="worker 1 died"):
        run.wait(timeout=30)
    assert time.time() - t0 < 10
    assert load_run(run.path).meta["status"] == "failed"  # what was recorded is saved
    assert len(load_run(run.path).records) >= 10


def test_resume_from_checkpoint_continues_exactly(cluster2, runs_dir):
    """A run resumed from its checkpoint ends where an uninterrupted run ends (float64, dropout on:
    the checkpoint carries each worker's RNG state, so the masks after the resume are the same)."""
    from lab.runs import Run
    cfg = RunConfig(steps=40, checkpoint_every=20, runs_dir=runs_dir).replace(**{"model.dtype": "float64"})
    assert cfg.model.dropout > 0
    first = cluster2.train(cfg).wait(timeout=120)
    resumed = Run.resume_from(cluster2, first.path, steps=80).wait(timeout=120)
    assert min(r["step"] for r in resumed.records) == 40 and resumed.meta["resumed_at_step"] == 40
    whole = cluster2.train(cfg.replace(steps=80)).wait(timeout=120)
    a = torch.load(resumed.path / "checkpoint.pt")["model"]
    b = torch.load(whole.path / "checkpoint.pt")["model"]
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-9


def test_waiting_for_a_straggler_is_split_from_communication(cluster2, runs_dir):
    """With worker 1 slowed 3x, worker 0 spends its extra time waiting, not communicating."""
    run = cluster2.train(RunConfig(steps=40, slowdown=[1, 3], runs_dir=runs_dir)).wait(timeout=120)
    per = run.summary()["per_worker"]
    fast, slow = per[0], per[1]
    assert fast["wait_s"] > 0.5 * (slow["compute_s"] - fast["compute_s"]), per
    assert fast["wait_s"] > 3 * slow["wait_s"] and fast["wait_s"] > fast["comm_s"], per
