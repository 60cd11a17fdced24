"""The linear learning-rate scaling rule with warm-up (Goyal et al. 2017): `optim.scale_lr`, issue 15."""
import pytest

from lab.config import OptimConfig, RunConfig
from lab.errors import ConfigError
from lab.optim import SCHEDULES, lr_at, scaled_lr


def test_linear_rule_by_hand():
    c = OptimConfig(lr=0.05, scale_lr="linear", base_batch=32)
    assert scaled_lr(c, 32) == pytest.approx(0.05)          # the base batch: unchanged
    assert scaled_lr(c, 8 * 32) == pytest.approx(0.4)       # 8 workers x 32: 8x the lr
    assert scaled_lr(c, 16) == pytest.approx(0.025)         # a smaller batch: scaled down too
    assert scaled_lr(c, None) == 0.05                       # no batch given: unscaled
    off = OptimConfig(lr=0.05)                               # the default: the rule is off
    assert off.scale_lr == "none" and scaled_lr(off, 8 * 32) == 0.05


def test_warmup_then_schedule_reach_the_scaled_lr():
    c = OptimConfig(lr=0.05, scale_lr="linear", base_batch=32, warmup_steps=10, schedule="cosine")
    g = 4 * 32
    assert lr_at(c, 0, 100, g) == pytest.approx(0.2 / 10)   # warm-up starts at lr/warmup_steps
    assert lr_at(c, 9, 100, g) == pytest.approx(0.2)        # reaches 4 x 0.05 at the end of warm-up
    assert lr_at(c, 55, 100, g) == pytest.approx(0.2 * SCHEDULES.get("cosine")(55, 100, 10))
    assert lr_at(c, 9, 100) == pytest.approx(0.05)          # callers that give no batch: as before


def test_bad_values_are_one_line():
    for path, value, start in [("optim.scale_lr", "sqrt", "scale_lr must be one of linear, none"),
                               ("optim.base_batch", 0, "base_batch must be an integer >= 1")]:
        cfg = RunConfig().replace(**{path: value})
        with pytest.raises(ConfigError) as e:
            cfg.validate()
        assert str(e.value).startswith(start) and "\n" not in str(e.value), str(e.value)


def test_short_names_and_cli_flags():
    cfg = RunConfig().replace(scale_lr="linear", base_batch=64)
    assert (cfg.optim.scale_lr, cfg.optim.base_batch) == ("linear", 64)
    import argparse
    from lab import cli
    p = argparse.ArgumentParser()
    cli._add_run_args(p)
    cfg = cli.config_from_args(p.parse_args(["--scale-lr", "linear", "--base-batch", "16", "--warmup-steps", "20"]))
    assert (cfg.optim.scale_lr, cfg.optim.base_batch, cfg.optim.warmup_steps) == ("linear", 16, 20)


def test_workers_see_the_scaled_lr(cluster_factory, runs_dir):
    """On a 2-worker cluster the records' lr is base lr x (2 x batch) / base_batch after warm-up."""
    cluster = cluster_factory(2)
    cfg = RunConfig(steps=6, eval_every=6, runs_dir=runs_dir).replace(
        **{"optim.lr": 0.01, "optim.scale_lr": "linear", "optim.base_batch": 16, "data.batch_size": 16,
           "optim.warmup_steps": 2, "model.name": "mlp"})
    run = cluster.train(cfg).wait(timeout=120)
    lrs = {r["step"]: r["lr"] for r in run.records if r["rank"] == 0}
    assert lrs[0] == pytest.approx(0.02 / 2) and lrs[5] == pytest.approx(0.02)   # 0.01 x 32/16
