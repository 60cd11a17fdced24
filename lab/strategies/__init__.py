"""Training strategies, one small module each, chosen by name.

`STRATEGIES.build(name, cfg: StrategyConfig, ctx: WorkerContext)` -> a `Strategy` (see
`lab.strategies.base`). Adding a strategy is one file with one `@strategy("name")` class: the
modules here are found by themselves (pkgutil), and the knobs the class declares in its nested
`Options` dataclass join `StrategyConfig`, the CLI, the panel and the README (`lab.knobs`).
"""
import importlib
import pkgutil
from dataclasses import dataclass

from ..knobs import knob
from ..registry import Registry

STRATEGIES = Registry("strategy")


strategy = STRATEGIES.named   # @strategy("name") registers a Strategy class and sets its `name`


@dataclass
class Common:
    """The knobs of every strategy (each strategy adds its own `Options`)."""
    name: str = knob("sync", "the training strategy (lab/strategies/, one file each)",
                     choices=STRATEGIES.names, live=True, flag="strategy")


for _m in pkgutil.iter_modules(__path__):  # every module here: its @strategy classes register themselves
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")
