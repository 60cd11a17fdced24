"""Data: embedded datasets (no downloads) and per-worker sharding.

`DATASETS` maps a data name to a factory `f(cfg: DataConfig, dtype) -> lab.tasks.Task`;
each factory carries a `kind` attribute (classification, language, control).
"""
from ..registry import Registry

DATASETS = Registry("data")


def dataset(name: str, kind: str = "classification"):
    """Register a task factory under a data name."""
    def deco(fn):
        fn.kind = kind
        return DATASETS.register(name)(fn)
    return deco


from . import digits  # noqa: E402,F401  (registers "digits")
from . import text, cifar  # noqa: E402,F401  (registers "text" and "cifar10")
from ..tasks import control  # noqa: E402,F401  (registers "cartpole", chapter 10)
