"""Training strategies, one small module each, chosen by name.

`STRATEGIES.build(name, cfg: StrategyConfig, ctx: WorkerContext)` -> a `Strategy` (see
`lab.strategies.base`). Adding a strategy is one file and one `@strategy("name")` line.
"""
from ..registry import Registry

STRATEGIES = Registry("strategy")


def strategy(name: str):
    """Register a Strategy class under `name`."""
    def deco(cls):
        cls.name = name
        return STRATEGIES.register(name)(cls)
    return deco


from . import sync  # noqa: E402,F401
from . import ps, async_ps, ssp, local  # noqa: E402,F401  (parameter servers, bounded staleness, local SGD)
from . import compressed  # noqa: E402,F401  (any gradient strategy above, with a compressor)
