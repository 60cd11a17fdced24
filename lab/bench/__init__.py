"""Benchmarks: `python -m lab bench NAME [--quick] [--json]` prints figures measured side by side in one run.

Each benchmark is one file registering `f(quick: bool) -> dict` with `@benchmark("name")`; the
dict holds a `table` (list of row dicts) and the `ratios` it was written to measure. The CLI
prints the table, the ratios, the machine and the date, ready to paste into BENCHMARKS.md.
"""
from ..registry import Registry

BENCHMARKS = Registry("benchmark")


def benchmark(name: str):
    """Register a benchmark function `f(quick: bool) -> {"table": [...], "ratios": {...}}`."""
    return BENCHMARKS.register(name)


def load_all():
    """Import every benchmark module in this folder (they register themselves)."""
    import importlib
    import pkgutil
    for m in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{m.name}")
