"""Typed configs, one dataclass per component, composed into `RunConfig`.

Every field is declared once with `lab.knobs.knob` (help, range or choices, whether it may change
mid-run, a widget hint, a short name): validation (one-line messages naming the knob and what it
accepts), the CLI's flags, `ALIASES`, the panel's widgets and the README's knob table all read
those declarations. `StrategyConfig` and `CompressionConfig` hold the common knobs plus the
`Options` of every registered strategy (compressor), flattened, so `cfg.strategy.staleness` and
`cfg.strategy.compression.ratio` are plain fields. Every config round-trips through plain dicts
(`to_dict` / `from_dict`) and is saved with every run under `runs/<id>/config.json`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from . import knobs
from .compression import COMPRESSORS, Common as CompressionCommon
from .link import LinkConfig  # noqa: F401  (beside Comm, which charges it)
from .errors import check
from .knobs import knob
from .strategies import STRATEGIES, Common as StrategyCommon


# registry names, looked up when a value is checked (importing tasks and models is not free)
def _tasks():
    from .tasks import TASKS
    return TASKS.names()


def _models():
    from .models import MODELS
    return MODELS.names()


def _optimizers():
    from .optim import OPTIMIZERS
    return OPTIMIZERS.names()


def _schedules():
    from .optim import SCHEDULES
    return SCHEDULES.names()


@dataclass
class DataConfig:
    name: str = knob("digits", "dataset: digits (embedded), text (pydoc topics or a file), cifar10, cartpole",
                     choices=_tasks, flag="data")
    batch_size: int = knob(32, "samples (or sequences / rollout steps) per worker per step", range=(1, None),
                           live=True, ui=(1, 256))
    shard: str = knob("iid", "iid: disjoint random shards; dirichlet: label-skewed shards", choices=("iid", "dirichlet"))
    alpha: float = knob(0.5, "Dirichlet concentration for label skew (smaller = more skewed)", range="(0, inf)")
    test_fraction: float = knob(0.2, "held-out share for test metrics", range="(0, 1)")
    path: Optional[str] = knob(None, "a local directory / file for cifar10 or text", flag="data_path")
    seq_len: int = knob(64, "characters per training sequence (text only)", range=(2, None))
    env: str = knob("CartPole-v1", "gymnasium environment id with discrete actions (cartpole data)")
    n_envs: int = knob(8, "environments per worker (cartpole data); batch_size = rollout length", range=(1, 1024))
    seed: int = knob(0, "shuffling, sharding and initialisation seed")

    def validate(self):
        knobs.validate(self)
        from .tasks import TASKS
        if TASKS.get(self.name).kind == "control":
            from .envs import make_env
            make_env(self.env, seed=0).close()  # rejects unknown or continuous-action environments


@dataclass
class ModelConfig:
    name: str = knob("cnn", "model: cnn, mlp, lstm, gru, actor_critic, ...", choices=_models, flag="model")
    dropout: float = knob(0.5, "dropout probability where the model has dropout", range="[0, 1)")
    dtype: str = knob("float32", "parameter dtype (float64 for exactness tests)", choices=("float32", "float64"))

    def validate(self):
        knobs.validate(self)


@dataclass
class OptimConfig:
    name: str = knob("adam", "sgd, momentum (SGD with momentum) or adam", choices=_optimizers, flag="optimizer")
    lr: float = knob(0.003, "learning rate", range="(0, 10]", live=True, widget="log", ui=(1e-4, 1),
                     label="learning rate")
    momentum: float = knob(0.9, "momentum of the `momentum` optimizer", range="[0, 1)", live=True)
    weight_decay: float = knob(0.0, "L2 penalty added by the optimizer", range=(0, None))
    clip_grad_norm: float = knob(0.0, "clip each worker's gradient norm before it is sent", range=(0, None),
                                 live=True, note="0 = off")
    schedule: str = knob("constant", "lr over the run: constant, cosine (to 0) or linear (to 0)", choices=_schedules,
                         live=True)
    warmup_steps: int = knob(0, "linear lr warm-up from lr/warmup_steps before the schedule", range=(0, None),
                             live=True)
    scale_lr: str = knob("none", "large batches: linear multiplies lr by the global batch (batch_size x workers) "
                         "/ base_batch (Goyal et al. 2017; pair it with warmup_steps)", choices=("none", "linear"))
    base_batch: int = knob(32, "the global batch lr was tuned for (scale_lr linear)", range=(1, None))

    def validate(self):
        knobs.validate(self)


@dataclass
class CompressionConfig(CompressionCommon):
    """The compressor and its knobs: the common ones (`lab.compression.Common`) plus every registered
    compressor's `Options` (joined at import, see `knobs.compose` at the end of this module)."""

    def validate(self):
        knobs.validate(self)


@dataclass
class StrategyConfig(StrategyCommon):
    """The strategy and its knobs: `name` plus every registered strategy's `Options` (joined at
    import), and the compression its gradients go through."""
    compression: CompressionConfig = field(default_factory=CompressionConfig)

    def validate(self):
        knobs.validate(self)
        self.compression.validate()
        cc = self.compression
        if self.name == "compressed":  # the one strategy that insists on a compressor
            real = [n for n in COMPRESSORS.names() if not getattr(COMPRESSORS.get(n), "identity", False)]
            check(cc.name in real, "compressor", f"one of {', '.join(real)} with strategy compressed", cc.name)
        if getattr(STRATEGIES.get(self.effective()), "kind", None) == "server":
            ok = [n for n in COMPRESSORS.names() if getattr(COMPRESSORS.get(n), "shape_ctx", True)]
            allowed = f"one of {', '.join(ok)} with strategy {self.effective()} (a server decodes each worker's payload)"
            check(cc.name in ok, "compressor", allowed, cc.name)
            fold = getattr(COMPRESSORS.get(cc.name), "vector_needs_global", False)
            check(not fold or cc.scope == "global", "strategy.compression.scope",
                  f'"global" for {cc.name} with strategy {self.effective()} (a server receives one flat gradient, '
                  'which per layer would travel uncompressed)', cc.scope)

    def effective(self) -> str:
        """The strategy that really runs: `base` for `compressed`, else `name`."""
        return self.base if self.name == "compressed" else self.name


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
    steps: int = knob(300, "steps per worker", range=(1, 10_000_000), ui=(10, 100_000, 10))
    eval_every: int = knob(25, "test metrics every this many steps (rank 0), and at the end", range=(1, None),
                           live=True)
    slowdown: List[float] = knob([], "per-worker slow-down factors, one per worker, e.g. 1,3", range=(1, 100),
                                 live=True, note="1 = full speed")
    checkpoint_every: int = knob(100, "steps between checkpoints fetched into runs/<id>/", range=(1, None), live=True)
    elastic: bool = knob(False, "a dead worker does not end the run: the others re-form the group, go on "
                                "from their last common state (sync, local, ps, async, ssp; lab.elastic)")
    min_workers: int = knob(1, "an elastic run stops with an error once fewer workers than this are left",
                            range=(1, 256))
    name: str = knob("", "a label for plots and the arena")
    runs_dir: str = knob("runs", "where runs are saved")

    def validate(self, workers: Optional[int] = None) -> "RunConfig":
        for part in (self.data, self.model, self.optim, self.strategy, self.link):
            part.validate()
        knobs.validate(self)
        if workers is not None and self.slowdown:
            check(len(self.slowdown) == workers, "slowdown", f"a list of {workers} factors (one per worker)", list(self.slowdown))
        from .tasks import check_compatible
        check_compatible(self.data.name, self.model.name)
        if self.elastic or self.min_workers != 1:
            from .elastic import check_config
            check_config(self, workers)
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


# Short names accepted by `set_path`, the CLI and live changes ("lr" for "optim.lr"): every knob's
# short name (its `flag`, else its field name), kept up to date as strategies and compressors register.
ALIASES: Dict[str, str] = {}


def _aliases() -> None:
    new: Dict[str, str] = {}
    for e in knobs.walk(RunConfig):
        if e.short in new:
            raise TypeError(f"knobs {new[e.short]} and {e.path} share the short name {e.short!r}: give one a flag=")
        new[e.short] = e.path
    ALIASES.clear()
    ALIASES.update(new)


knobs.compose(CompressionConfig, COMPRESSORS, then=_aliases)
knobs.compose(StrategyConfig, STRATEGIES, then=_aliases)


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
