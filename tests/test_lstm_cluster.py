"""The character LSTM on a real 2-worker cluster and from the command line (issue 6, chapter 03)."""
import json
import math
import os
import subprocess
import sys

import pytest

from lab.config import RunConfig

LSTM = {"model.name": "lstm", "data.name": "text", "optim.lr": 0.01}


def losses(run, rank):
    return run.series("loss", rank=rank)[1]


@pytest.fixture(scope="module")
def sync_run(cluster2, tmp_path_factory):
    cfg = RunConfig(steps=40, eval_every=20, runs_dir=str(tmp_path_factory.mktemp("runs"))).replace(**LSTM)
    return cluster2.train(cfg, strategy="sync").wait(timeout=120)


def test_lstm_sync_records_count_tokens_and_the_loss_falls(sync_run):
    s = sync_run.summary()
    assert s["status"] == "finished" and s["steps"] == 40 and s["unit"] == "tokens"
    assert len(sync_run.records) == 2 * 40  # every step of both workers reached the notebook
    cfg = sync_run.cfg.data
    for r in sync_run.records:
        assert r["unit"] == "tokens" and r["n"] == cfg.batch_size * cfg.seq_len and r["throughput"] > 0
    for rank in (0, 1):
        first, last = losses(sync_run, rank)[:5], losses(sync_run, rank)[-5:]
        assert sum(last) / 5 < sum(first) / 5 - 0.5, (rank, first, last)  # from ~4.6 (uniform) well down
    # sync averages gradients, so both workers send the whole gradient's worth of bytes every step
    n_params = 119_207  # Embedding 103x64, LSTM 64->128, Linear 128->103 on the default text
    assert all(r["bytes_sent"] >= 4 * n_params for r in sync_run.records)
    evals = [r for r in sync_run.records if "perplexity" in r]
    assert [r["step"] for r in evals] == [19, 39] and all(r["rank"] == 0 for r in evals)
    assert evals[-1]["perplexity"] < evals[0]["perplexity"] and math.isclose(
        evals[-1]["perplexity"], math.exp(evals[-1]["test_loss"]), rel_tol=1e-9)


def test_lstm_with_powersgd_sends_far_fewer_bytes_and_still_learns(cluster2, sync_run):
    cfg = sync_run.cfg.replace(**{"strategy.compression.name": "powersgd", "strategy.compression.error_feedback": True})
    run = cluster2.train(cfg).wait(timeout=120)
    s, plain = run.summary(), sync_run.summary()
    assert s["status"] == "finished" and s["unit"] == "tokens"
    for rank in (0, 1):  # in-process summaries key workers by int (JSON makes them strings)
        assert s["per_worker"][rank]["bytes_sent_per_step"] < plain["per_worker"][rank]["bytes_sent_per_step"] / 10
    assert sum(losses(run, 0)[-5:]) < sum(losses(run, 0)[:5])


def test_cli_runs_the_lstm_on_text_and_prints_perplexity(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lab", "run", "--strategy", "sync", "--workers", "2",
                          "--model", "lstm", "--data", "text", "--steps", "12", "--lr", "0.01", "--json",
                          "--runs-dir", str(tmp_path / "runs")],
                         capture_output=True, text=True, timeout=180, env=os.environ)
    assert out.returncode == 0, out.stderr[-3000:]
    s = json.loads(out.stdout)
    assert s["status"] == "finished" and s["steps"] == 12 and s["unit"] == "tokens" and s["workers"] == 2
    assert 1 < s["perplexity"] < 103  # better than a uniform guess over the vocabulary after 12 steps
    assert all(w["throughput"] > 0 for w in s["per_worker"].values())
    assert len(list((tmp_path / "runs").iterdir())) == 1
