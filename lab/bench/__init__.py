"""Benchmarks: `python -m lab bench NAME [--quick] [--json] [--out DIR]` measures side by side and judges.

Each benchmark is one file registering `f(quick: bool) -> dict` with `@benchmark("name")`; the
dict holds a `table` (list of row dicts), the `ratios` it was written to measure, its `targets`
(`lab.bench.targets.Target`: met or missed, noisy or not) and its raw `rounds`. The CLI prints
them, exits 1 when a target that counts is missed, and saves a full run as
`bench-results/NAME.json` (`lab.bench.results`); `python -m lab bench --report` renders
BENCHMARKS.md from those files (`lab.bench.render`). `tests/test_bench.py` runs every bench quick.
"""
from ..registry import Registry

BENCHMARKS = Registry("benchmark")


def benchmark(name: str):
    """Register a benchmark `f(quick: bool) -> {"table": [...], "ratios": {...}, "targets": [Target, ...]}`."""
    return BENCHMARKS.register(name)


def load_all():
    """Import every benchmark module in this folder (they register themselves)."""
    import importlib
    import pkgutil
    for m in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{m.name}")
