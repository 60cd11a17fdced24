"""Gradient compressors, one small file each, chosen by name (chapter 07).

`COMPRESSORS.build(name, cfg: CompressionConfig)` -> a Compressor (see `lab.compression.base`).
Adding a compressor is one file with one `@compressor("name")` class (modules here are found by
themselves); the knobs it declares in its nested `Options` dataclass join `CompressionConfig`.
"""
import importlib
import pkgutil
from dataclasses import dataclass

from ..knobs import knob
from ..registry import Registry

COMPRESSORS = Registry("compressor")


compressor = COMPRESSORS.named   # @compressor("name") registers a Compressor class and sets its `name`


@dataclass
class Common:
    """The knobs of compression in general (each compressor adds its own `Options`)."""
    name: str = knob("none", "the gradient compressor (lab/compression/, one file each)",
                     choices=COMPRESSORS.names, live=True, flag="compressor")
    error_feedback: bool = knob(False, "keep what compression dropped (the residual) and add it next step",
                                live=True)
    scope: str = knob("layer", "compress each layer's gradient, or each flat bucket (global)",
                      choices=("layer", "global"))
    on_switch: str = knob("keep", "residuals when the compressor changes mid-run: keep, reset or flush",
                          choices=("keep", "reset", "flush"), live=True)


for _m in pkgutil.iter_modules(__path__):  # every module here: its @compressor classes register themselves
    if not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")
