"""Gradient compressors, one small file each, chosen by name (chapter 07).

`COMPRESSORS.build(name, cfg: CompressionConfig)` -> a Compressor (see `lab.compression.base`).
"""
from ..registry import Registry

COMPRESSORS = Registry("compressor")


def compressor(name: str):
    """Register a Compressor class under `name`."""
    def deco(cls):
        cls.name = name
        return COMPRESSORS.register(name)(cls)
    return deco


from . import none  # noqa: E402,F401
from . import fp16, bf16, topk, randomk, qsgd, terngrad, signsgd, efsignsgd, powersgd  # noqa: E402,F401
