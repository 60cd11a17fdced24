"""Knobs declared once (`lab.knobs`): validation, the CLI's flags, the aliases, the panel's widgets
and the README's table all come from the declarations; a new strategy's Options reach all of
them with no other edit. No cluster: everything here is in-process."""
import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest

from lab import cli, knobs
from lab.compression import COMPRESSORS, compressor
from lab.compression.base import Base
from lab.config import ALIASES, CompressionConfig, RunConfig, StrategyConfig
from lab.errors import ConfigError
from lab.knobs import knob
from lab.strategies import STRATEGIES, strategy
from lab.strategies.base import Strategy

README = Path(__file__).resolve().parent.parent / "README.md"


@dataclass
class Toy:
    lr: float = knob(0.1, "learning rate", range="(0, 10]")
    steps: int = knob(5, "steps", range=(1, 100))
    k: int = knob(1, "at least one", range=(1, None))
    frac: float = knob(0.5, "a fraction", range="[0, 1)")
    mode: str = knob("keep", "what to do", choices=("keep", "reset", "flush"))
    on: bool = knob(False, "a switch")
    bw: Optional[float] = knob(None, "bandwidth", range="(0, inf)", note="None: off")
    clip: float = knob(0.0, "clip", range=(0, None), note="0 = off")
    factors: List[float] = knob([], "per worker", range=(1, 100))


def message(**change) -> str:
    with pytest.raises(ConfigError) as e:
        knobs.validate(dataclasses.replace(Toy(), **change))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_messages_come_from_the_declarations():
    knobs.validate(Toy())  # the defaults are valid
    assert message(lr=-1.0) == "lr must be a number in (0, 10] (got -1.0)"
    assert message(lr=float("nan")).startswith("lr must be a number in (0, 10]")
    assert message(lr="x") == "lr must be a number in (0, 10] (got 'x')"
    assert message(steps=0) == "steps must be an integer in [1, 100] (got 0)"
    assert message(steps=2.5) == "steps must be an integer in [1, 100] (got 2.5)"
    assert message(k=0) == "k must be an integer >= 1 (got 0)"
    assert message(frac=1.0) == "frac must be a number in [0, 1) (got 1.0)"
    assert message(mode="drop") == "mode must be one of flush, keep, reset (got 'drop')"
    assert message(on="yes") == "on must be True or False (got 'yes')"
    assert message(on=1) == "on must be True or False (got 1)"  # a bool knob takes no int
    assert message(bw=0) == "bw must be a number > 0 or None (None: off) (got 0)"
    assert message(clip=-1) == "clip must be a number >= 0 (0 = off) (got -1)"
    assert message(factors=[1, 0]) == "factors must be a list of numbers in [1, 100] (got [1, 0])"
    assert message(factors=3) == "factors must be a list of numbers in [1, 100] (got 3)"
    knobs.validate(Toy(lr=10, steps=100, frac=0.0, bw=5.0, factors=[1, 100], on=True))  # closed ends are in


def test_range_text_and_parsing():
    R = knobs.Range.of
    assert R("(0, 10]").text() == "in (0, 10]" and 10 in R("(0, 10]") and 0 not in R("(0, 10]")
    assert R((0, None)).text() == ">= 0" and R("(0, inf)").text() == "> 0" and R("[-inf, 3)").text() == "< 3"
    with pytest.raises(ValueError):
        R("0..10")
    with pytest.raises(ValueError):
        knob(1, "bad hint", widget="knob")
    e = {e.name: e for e in knobs.entries(Toy)}
    assert e["factors"].parse("1,3") == [1.0, 3.0] and e["bw"].parse("none") is None and e["steps"].parse("7") == 7
    with pytest.raises(ConfigError, match="^steps must be"):
        e["steps"].parse("seven")


def test_the_run_config_says_what_it_always_said():
    for path, value, msg in [
        ("optim.lr", -1.0, "lr must be a number in (0, 10] (got -1.0)"),
        ("strategy.staleness", -1, "staleness must be an integer >= 0 (got -1)"),
        ("strategy.compression.levels", 0, "levels must be an integer >= 1 (got 0)"),
        ("strategy.compression.on_switch", "drop", "on_switch must be one of flush, keep, reset (got 'drop')"),
        ("strategy.compression.error_feedback", "yes", "error_feedback must be True or False (got 'yes')"),
        ("strategy.bucket_mb", 0, "bucket_mb must be a number > 0 (got 0)"),
        ("data.batch_size", 0, "batch_size must be an integer >= 1 (got 0)"),
        ("steps", 0, "steps must be an integer in [1, 10000000] (got 0)"),
    ]:
        with pytest.raises(ConfigError) as e:
            RunConfig().replace(**{path: value}).validate()
        assert str(e.value) == msg
    # cross-field checks stay explicit
    with pytest.raises(ConfigError, match="^compressor must be one of .* with strategy compressed"):
        RunConfig().replace(strategy="compressed").validate()
    with pytest.raises(ConfigError, match="^compressor must be one of .* with strategy ssp"):
        RunConfig().replace(strategy="ssp", compressor="randomk").validate()
    with pytest.raises(ConfigError, match="^slowdown must be a list of 2"):
        RunConfig(slowdown=[1, 3, 1]).validate(workers=2)


def test_shared_declarations_and_owners():
    owners = CompressionConfig.__knob_owners__
    assert owners["ratio"] == ("randomk", "topk") and owners["rank"] == ("powersgd",)
    assert StrategyConfig.__knob_owners__["staleness"] == ("ssp",)
    cfg = RunConfig()
    assert (cfg.strategy.staleness, cfg.strategy.compression.ratio, cfg.strategy.bucket_mb) == (2, 0.01, 25.0)
    # every knob has one short name (alias); the old ones are still there
    assert len(ALIASES) == len(list(knobs.walk(RunConfig)))
    for short, path in {"lr": "optim.lr", "optimizer": "optim.name", "compressor": "strategy.compression.name",
                        "ratio": "strategy.compression.ratio", "staleness": "strategy.staleness",
                        "data": "data.name", "model": "model.name", "bandwidth_mbps": "link.bandwidth_mbps"}.items():
        assert ALIASES[short] == path


def run_parser(multi=False):
    p = argparse.ArgumentParser()
    cli._add_run_args(p, multi=multi)
    return p


def test_every_knob_has_a_cli_flag_that_sets_it():
    flags = run_parser()._option_string_actions
    for e in knobs.walk(RunConfig):
        assert e.flag in flags, e.path
        if e.base is bool:
            assert "--no-" + e.flag[2:] in flags, e.path
    assert "--strategy" not in run_parser(multi=True)._option_string_actions  # compare takes --strategies
    a = run_parser().parse_args(["--bucket-mb", "4", "--average-optimizer", "--scope", "global", "--on-switch",
                                 "flush", "--majority-vote", "--no-error-feedback", "--slowdown", "1,3", "--lr", "0.5"])
    cfg = cli.config_from_args(a)
    s = cfg.strategy
    assert (s.bucket_mb, s.average_optimizer, s.compression.scope, s.compression.on_switch) == (4.0, True, "global", "flush")
    assert s.compression.majority_vote is True and s.compression.error_feedback is False
    assert cfg.slowdown == [1.0, 3.0] and cfg.optim.lr == 0.5
    with pytest.raises(ConfigError, match="^lr must be a number in"):
        cli.config_from_args(run_parser().parse_args(["--lr", "fast"]))


def test_every_strategy_and_compression_knob_has_a_panel_widget():
    W = pytest.importorskip("ipywidgets")
    from widgets.panel import COMMON_KNOBS, PANEL_ONLY, is_live, make_knobs
    widgets = make_knobs(RunConfig(), 2)
    for e in knobs.walk(RunConfig):
        if not (e.path.startswith("strategy.") or e.short in COMMON_KNOBS) or e.short in ("strategy", "compressor"):
            continue
        w = widgets[e.short]
        if e.short in PANEL_ONLY:  # slowdown: the panel's own row of per-worker sliders
            continue
        kind = {"checkbox": W.Checkbox, "dropdown": W.Dropdown, "log": W.FloatLogSlider, "text": W.Text}.get(e.widget)
        assert kind is None or isinstance(w, kind), (e.path, w)
        if e.widget == "slider":
            assert isinstance(w, W.IntSlider if e.base is int else W.FloatSlider), (e.path, w)
        value = RunConfig()
        for p in e.path.split("."):
            value = getattr(value, p)
        if value is not None:
            assert w.value == pytest.approx(value), e.path  # the slider's range holds the default
    assert is_live("lr") and is_live("staleness") and not is_live("steps") and not is_live("scope")
    assert not is_live("workers") and is_live("slowdown")


def test_readme_table_is_the_rendering_of_the_declarations():
    text = README.read_text()
    assert knobs.START in text and knobs.END in text, "README needs its knob table: python -m lab knobs --readme README.md"
    assert knobs.section(text) == knobs.markdown_table(RunConfig), \
        "README's knob table is stale: python -m lab knobs --readme README.md"
    assert knobs.replace_section(text, knobs.markdown_table(RunConfig)) == text


def test_an_old_config_json_still_loads():
    old = {  # a config.json saved before the knobs moved beside their strategies and compressors
        "data": {"name": "digits", "batch_size": 16, "shard": "iid", "alpha": 0.5, "test_fraction": 0.2, "path": None,
                 "seq_len": 64, "env": "CartPole-v1", "n_envs": 8, "seed": 3},
        "model": {"name": "mlp", "dropout": 0.5, "dtype": "float32"},
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "clip_grad_norm": 0.0,
                  "schedule": "constant", "warmup_steps": 0},
        "strategy": {"name": "ssp", "base": "sync", "staleness": 4, "period": 8, "average_optimizer": False,
                     "bucket_mb": 25.0, "compression": {"name": "topk", "ratio": 0.05, "levels": 16, "rank": 2,
                                                        "error_feedback": True, "scope": "layer",
                                                        "majority_vote": False, "on_switch": "keep"}},
        "link": {"bandwidth_mbps": None, "latency_ms": 0.0},
        "steps": 120, "eval_every": 25, "slowdown": [], "checkpoint_every": 100, "name": "old", "runs_dir": "runs",
    }
    cfg = RunConfig.from_dict(old).validate()
    assert (cfg.strategy.name, cfg.strategy.staleness, cfg.strategy.compression.ratio) == ("ssp", 4, 0.05)
    assert cfg.data.batch_size == 16 and cfg.optim.lr == 0.05 and cfg.steps == 120
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg and again is not cfg
    import copy
    assert copy.deepcopy(cfg) == cfg and cfg.replace(staleness=1) != cfg


def test_a_new_strategy_is_one_declaration_away_from_every_front_end():
    """A made-up strategy with an Options dataclass: flag, alias, validation, panel widget, README row."""
    W = pytest.importorskip("ipywidgets")
    from types import SimpleNamespace

    from widgets.panel import StrategyPanel, compressor_knobs, make_knobs, strategy_knobs, visible_knobs

    @strategy("_hopper")
    class Hopper(Strategy):
        kind = "parameters"

        @dataclass
        class Options:
            hops: int = knob(3, "neighbours to average with", range=(1, 8), live=True)
            wide: bool = knob(False, "use the wide ring")

    @compressor("_halver")
    class Halver(Base):
        @dataclass
        class Options:
            keep_bits: int = knob(8, "bits kept per entry", range=(1, 16), live=True, widget="slider")

    try:
        cfg = RunConfig()
        assert cfg.strategy.hops == 3 and cfg.strategy.compression.keep_bits == 8
        assert ALIASES["hops"] == "strategy.hops" and ALIASES["keep_bits"] == "strategy.compression.keep_bits"
        assert cfg.replace(hops=5, strategy="_hopper").strategy.hops == 5
        with pytest.raises(ConfigError) as e:
            cfg.replace(hops=0).validate()
        assert str(e.value) == "hops must be an integer in [1, 8] (got 0)"
        with pytest.raises(ConfigError, match="^keep_bits must be an integer in \\[1, 16\\]"):
            cfg.replace(keep_bits=20).validate()
        a = run_parser().parse_args(["--strategy", "_hopper", "--hops", "4", "--wide", "--keep-bits", "4"])
        got = cli.config_from_args(a)
        assert (got.strategy.name, got.strategy.hops, got.strategy.wide, got.strategy.compression.keep_bits) == \
            ("_hopper", 4, True, 4)
        assert strategy_knobs("_hopper") == ["hops", "wide"] and "keep_bits" in compressor_knobs("_halver")
        assert {"hops", "wide"} <= set(visible_knobs("_hopper", "none")) and "hops" not in visible_knobs("sync", "none")
        assert isinstance(make_knobs(cfg, 2)["hops"], W.IntSlider)
        panel = StrategyPanel(SimpleNamespace(workers=2, cluster_id="none", timeout_s=5.0), RunConfig(steps=50),
                              dashboard=False)
        panel.strategy.value = "_hopper"
        panel.compressor.value = "_halver"
        box = {id(w) for w in panel._knob_box.children}
        assert {id(panel.knobs[k]) for k in ("hops", "wide", "keep_bits")} <= box
        panel.knobs["hops"].value = 6
        assert panel.config().strategy.hops == 6
        table = knobs.markdown_table(RunConfig)
        assert "| `--hops` | `strategy.hops` | `3` | an integer in [1, 8] | yes | neighbours to average with (_hopper) |" \
            in table
        # a second component may not declare the same name differently
        with pytest.raises(TypeError, match="hops"):
            @strategy("_clash")
            class Clash(Strategy):
                @dataclass
                class Options:
                    hops: int = knob(1, "something else")
        assert "_clash" not in STRATEGIES and StrategyConfig().hops == 3
    finally:
        STRATEGIES.unregister("_hopper")
        COMPRESSORS.unregister("_halver")
    assert "hops" not in {f.name for f in dataclasses.fields(StrategyConfig)} and "hops" not in ALIASES
    assert "keep_bits" not in {f.name for f in dataclasses.fields(CompressionConfig)}
    assert knobs.markdown_table(RunConfig) == knobs.section(README.read_text())
