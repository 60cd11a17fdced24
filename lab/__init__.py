"""lab: distributed deep learning you can see.

The engine behind the notebooks: an ipyparallel cluster of PyTorch workers (`lab.cluster`),
embedded data (`lab.data`), the seeds' models (`lab.models`), strategies (`lab.strategies`),
compressors (`lab.compression`), runs that stream every record to the notebook (`lab.runs`)
and a command line (`python -m lab`).
"""
import os as _os

# Quick mode: chapters and benchmarks shrink their budgets (CI runs every chapter this way).
QUICK = _os.environ.get("LAB_QUICK", "") not in ("", "0", "false", "False")

from .errors import ConfigError, LabError, WorkerError  # noqa: E402
from .config import (RunConfig, DataConfig, ModelConfig, OptimConfig, StrategyConfig,  # noqa: E402
                     CompressionConfig, LinkConfig)

__all__ = ["QUICK", "ConfigError", "LabError", "WorkerError", "RunConfig", "DataConfig", "ModelConfig",
           "OptimConfig", "StrategyConfig", "CompressionConfig", "LinkConfig", "Cluster", "Run", "load_run"]


def __getattr__(name):  # lazy: `import lab` stays light on engines and in the CLI
    if name == "Cluster":
        from .cluster import Cluster
        return Cluster
    if name in ("Run", "load_run"):
        from . import runs
        return getattr(runs, name)
    raise AttributeError(name)
