"""Typed configs, one dataclass per component, composed into `RunConfig`.

Each dataclass validates its own knobs (`validate()`), with one-line messages that name the
knob and its allowed range, and round-trips through plain dicts (`to_dict` / `from_dict`) so
it is saved with every run under `runs/<id>/config.json`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import List, Optional

from .errors import check, check_choice

OPTIMIZERS = ("sgd", "momentum", "adam")
DTYPES = ("float32", "float64")
SHARDINGS = ("iid", "dirichlet")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


@dataclass
class DataConfig:
    name: str = "digits"            # dataset: digits (embedded), text (pydoc topics or a file), cifar10, cartpole
    batch_size: int = 32            # samples (or sequences / rollout steps) per worker per step
    shard: str = "iid"              # iid: disjoint random shards; dirichlet: label-skewed shards
    alpha: float = 0.5              # Dirichlet concentration for label skew (smaller = more skewed)
    test_fraction: float = 0.2      # held-out share for test metrics
    path: Optional[str] = None      # a local directory / file for cifar10 or text
    seq_len: int = 64               # characters per training sequence (text only)
    env: str = "CartPole-v1"        # gymnasium environment id with discrete actions (cartpole data)
    n_envs: int = 8                 # environments per worker (cartpole data); batch_size = rollout length
    seed: int = 0                   # shuffling, sharding and initialisation seed

    def validate(self):
        from .data import DATASETS
        check_choice(self.name, DATASETS.names(), "data")
        check(_is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        check_choice(self.shard, SHARDINGS, "shard")
        check(_num(self.alpha) and self.alpha > 0, "alpha", "a number > 0", self.alpha)
        check(_num(self.test_fraction) and 0 < self.test_fraction < 1, "test_fraction", "in (0, 1)", self.test_fraction)
        check(_is_int(self.seq_len) and self.seq_len >= 2, "seq_len", "an integer >= 2", self.seq_len)
        check(_is_int(self.seed), "seed", "an integer", self.seed)
        check(_is_int(self.n_envs) and 1 <= self.n_envs <= 1024, "n_envs", "an integer in [1, 1024]", self.n_envs)
        if DATASETS.get(self.name).kind == "control":
            from .agents.env import make_env
            make_env(self.env, seed=0).close()  # rejects unknown or continuous-action environments


@dataclass
class ModelConfig:
    name: str = "cnn"               # model: cnn, mlp, lstm, gru, actor_critic, ...
    dropout: float = 0.5            # dropout probability where the model has dropout
    dtype: str = "float32"          # float64 for exactness tests

    def validate(self):
        from .models import MODELS
        check_choice(self.name, MODELS.names(), "model")
        check(_num(self.dropout) and 0 <= self.dropout < 1, "dropout", "in [0, 1)", self.dropout)
        check_choice(self.dtype, DTYPES, "dtype")


@dataclass
class OptimConfig:
    name: str = "adam"              # sgd, momentum (SGD with momentum) or adam
    lr: float = 0.003               # learning rate; can change mid-run
    momentum: float = 0.9           # used by `momentum`
    weight_decay: float = 0.0
    clip_grad_norm: float = 0.0     # clip each worker's gradient norm before it is sent (0 = off)
    schedule: str = "constant"      # lr over the run: constant, cosine (to 0) or linear (to 0)
    warmup_steps: int = 0           # linear lr warm-up from lr/warmup_steps before the schedule

    def validate(self):
        check_choice(self.name, OPTIMIZERS, "optimizer")
        check(_num(self.lr) and 0 < self.lr <= 10, "lr", "a number in (0, 10]", self.lr)
        check(_num(self.momentum) and 0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)
        check(_num(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "a number >= 0", self.weight_decay)
        check(_num(self.clip_grad_norm) and self.clip_grad_norm >= 0, "clip_grad_norm", "a number >= 0 (0 = off)", self.clip_grad_norm)
        from .optim import SCHEDULES
        SCHEDULES.get(self.schedule)  # an unknown name is the registry's one-line ConfigError
        check(_is_int(self.warmup_steps) and self.warmup_steps >= 0, "warmup_steps", "an integer >= 0", self.warmup_steps)


@dataclass
class CompressionConfig:
    name: str = "none"              # compressor: none, fp16, bf16, topk, randomk, qsgd, terngrad, signsgd, efsignsgd, powersgd
    ratio: float = 0.01             # share of entries kept by topk / randomk, in (0, 1]
    levels: int = 16                # quantisation levels for qsgd
    rank: int = 2                   # powersgd rank
    error_feedback: bool = False    # keep the residual (what compression dropped) and add it next step
    scope: str = "layer"            # compress each layer's gradient, or each flat bucket ("global")
    majority_vote: bool = False     # signsgd: aggregate by majority vote of signs instead of the mean
    on_switch: str = "keep"         # residuals when the compressor changes mid-run: keep, reset or flush

    def validate(self):
        from .compression import COMPRESSORS
        check_choice(self.name, COMPRESSORS.names(), "compressor")
        check(_num(self.ratio) and 0 < self.ratio <= 1, "ratio", "in (0, 1]", self.ratio)
        check(_is_int(self.levels) and self.levels >= 1, "levels", "an integer >= 1", self.levels)
        check(_is_int(self.rank) and self.rank >= 1, "rank", "an integer >= 1", self.rank)
        check(isinstance(self.error_feedback, bool), "error_feedback", "True or False", self.error_feedback)
        check(isinstance(self.majority_vote, bool), "majority_vote", "True or False", self.majority_vote)
        check_choice(self.scope, ("layer", "global"), "scope")
        check_choice(self.on_switch, ("keep", "reset", "flush"), "on_switch")


@dataclass
class StrategyConfig:
    name: str = "sync"              # sync, ps, async, ssp, local, compressed (see lab.strategies)
    base: str = "sync"              # compressed: the gradient strategy it compresses (sync, ps, async, ssp)
    staleness: int = 2              # ssp: how many steps a worker may run ahead of the slowest
    period: int = 8                 # local: local steps between averagings (H)
    average_optimizer: bool = False # local: also average optimizer state at each averaging
    bucket_mb: float = 25.0         # gradient bucket size for all-reduce, in MB
    compression: CompressionConfig = field(default_factory=CompressionConfig)

    def validate(self):
        from .strategies import STRATEGIES
        check_choice(self.name, STRATEGIES.names(), "strategy")
        check(_is_int(self.staleness) and self.staleness >= 0, "staleness", "an integer >= 0", self.staleness)
        check(_is_int(self.period) and self.period >= 1, "period", "an integer >= 1", self.period)
        check(_num(self.bucket_mb) and self.bucket_mb > 0, "bucket_mb", "a number > 0", self.bucket_mb)
        self.compression.validate()
        from .compression import COMPRESSORS
        if self.name == "compressed":
            from .strategies.compressed import BASES
            check_choice(self.base, BASES, "base")
            real = [n for n in COMPRESSORS.names() if n != "none"]
            check(self.compression.name != "none", "compressor", f"one of {', '.join(real)} with strategy compressed",
                  self.compression.name)
        if getattr(STRATEGIES.get(self.effective()), "server", False):
            ok = [n for n in COMPRESSORS.names() if getattr(COMPRESSORS.get(n), "shape_ctx", True)]
            allowed = f"one of {', '.join(ok)} with strategy {self.effective()} (a server decodes each worker's payload)"
            check(self.compression.name in ok, "compressor", allowed, self.compression.name)

    def effective(self) -> str:
        """The strategy that really runs: `base` for `compressed`, else `name`."""
        return self.base if self.name == "compressed" else self.name


@dataclass
class LinkConfig:
    """A *simulated* network link: each message is charged latency + bytes / bandwidth (slept)."""
    bandwidth_mbps: Optional[float] = None  # megabits per second; None = no simulated link
    latency_ms: float = 0.0                 # per message

    def validate(self):
        if self.bandwidth_mbps is not None:
            check(_num(self.bandwidth_mbps) and self.bandwidth_mbps > 0, "bandwidth_mbps", "a number > 0 (or None for no simulated link)", self.bandwidth_mbps)
        check(_num(self.latency_ms) and 0 <= self.latency_ms <= 10_000, "latency_ms", "in [0, 10000]", self.latency_ms)

    @property
    def active(self) -> bool:
        return self.bandwidth_mbps is not None or self.latency_ms > 0

    def seconds(self, nbytes: int, messages: int = 1) -> float:
        """Simulated transfer time of `nbytes` sent as `messages` messages."""
        t = messages * self.latency_ms / 1000.0
        if self.bandwidth_mbps is not None:
            t += nbytes * 8 / (self.bandwidth_mbps * 1e6)
        return t


@dataclass
class RunConfig:
    """Everything that shapes one training run; saved as `runs/<id>/config.json`.

    Example:
        >>> cfg = RunConfig(steps=300)
        >>> cfg.strategy.name = "sync"; cfg.optim.lr = 0.05
        >>> cfg.validate()
    """
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    link: LinkConfig = field(default_factory=LinkConfig)
    steps: int = 300                # steps per worker
    eval_every: int = 25            # test metrics every this many steps (rank 0), and at the end
    slowdown: List[float] = field(default_factory=list)  # per-worker slow-down factor (1 = normal)
    checkpoint_every: int = 100     # steps between checkpoints fetched into runs/<id>/
    name: str = ""                  # a label for plots and the arena
    runs_dir: str = "runs"          # where runs are saved

    def validate(self, workers: Optional[int] = None) -> "RunConfig":
        for part in (self.data, self.model, self.optim, self.strategy, self.link):
            part.validate()
        check(_is_int(self.steps) and 1 <= self.steps <= 10_000_000, "steps", "an integer in [1, 10000000]", self.steps)
        check(_is_int(self.eval_every) and self.eval_every >= 1, "eval_every", "an integer >= 1", self.eval_every)
        check(_is_int(self.checkpoint_every) and self.checkpoint_every >= 1, "checkpoint_every", "an integer >= 1", self.checkpoint_every)
        check(isinstance(self.slowdown, (list, tuple)), "slowdown", "a list of factors in [1, 100], one per worker", self.slowdown)
        for f in self.slowdown:
            check(_num(f) and 1 <= f <= 100, "slowdown", "a list of factors in [1, 100], one per worker (1 = full speed)", f)
        if workers is not None and self.slowdown:
            check(len(self.slowdown) == workers, "slowdown", f"a list of {workers} factors (one per worker)", list(self.slowdown))
        from .tasks import check_compatible
        check_compatible(self.data.name, self.model.name)
        return self

    def slowdown_of(self, rank: int) -> float:
        return float(self.slowdown[rank]) if rank < len(self.slowdown) else 1.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        return _from_dict(cls, d)

    def replace(self, **changes) -> "RunConfig":
        """A copy with dotted-path changes, e.g. `cfg.replace(**{"optim.lr": 0.1})`."""
        new = RunConfig.from_dict(self.to_dict())
        for path, value in changes.items():
            set_path(new, path, value)
        return new


def _from_dict(cls, d):
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if sub is not None and dataclasses.is_dataclass(sub) and isinstance(v, dict):
            v = _from_dict(sub, v)
        kwargs[f.name] = v
    return cls(**kwargs)


# Short names accepted by `set_path`, the CLI and live changes ("lr" for "optim.lr").
ALIASES = {
    "lr": "optim.lr", "optimizer": "optim.name", "momentum": "optim.momentum",
    "schedule": "optim.schedule", "warmup_steps": "optim.warmup_steps",
    "strategy": "strategy.name", "base": "strategy.base", "staleness": "strategy.staleness", "period": "strategy.period",
    "compressor": "strategy.compression.name", "ratio": "strategy.compression.ratio",
    "levels": "strategy.compression.levels", "rank": "strategy.compression.rank",
    "error_feedback": "strategy.compression.error_feedback",
    "bandwidth_mbps": "link.bandwidth_mbps", "latency_ms": "link.latency_ms",
    "batch_size": "data.batch_size", "model": "model.name", "data": "data.name",
    "env": "data.env", "n_envs": "data.n_envs",
}


def set_path(cfg, path: str, value) -> None:
    """Set a (possibly aliased) dotted knob on a config; unknown knobs are a ConfigError."""
    path = ALIASES.get(path, path)
    obj = cfg
    parts = path.split(".")
    for p in parts[:-1]:
        check(hasattr(obj, p), "knob", "one of " + ", ".join(sorted(ALIASES)) + " or a dotted config path", path)
        obj = getattr(obj, p)
    check(dataclasses.is_dataclass(obj) and parts[-1] in {f.name for f in dataclasses.fields(obj)},
          "knob", "one of " + ", ".join(sorted(ALIASES)) + " or a dotted config path", path)
    setattr(obj, parts[-1], value)


def get_path(cfg, path: str):
    obj = cfg
    for p in ALIASES.get(path, path).split("."):
        obj = getattr(obj, p)
    return obj
