"""A name -> factory table: how strategies, compressors, models, data and benchmarks are chosen."""
from __future__ import annotations

from typing import Callable, Dict, Generic, TypeVar

from .errors import check_choice

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; `register` is a decorator, `build` validates the name.

    Example:
        >>> MODELS = Registry("model")
        >>> @MODELS.register("mlp")
        ... def mlp(spec, cfg): ...
    """

    def __init__(self, knob: str):
        self.knob = knob
        self._table: Dict[str, Callable[..., T]] = {}

    def register(self, name: str):
        def deco(fn):
            self._table[name] = fn
            return fn
        return deco

    def get(self, name: str) -> Callable[..., T]:
        check_choice(name, self._table, self.knob)
        return self._table[name]

    def build(self, name: str, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self):
        return sorted(self._table)

    def __contains__(self, name):
        return name in self._table

    def __repr__(self):
        return f"Registry({self.knob}: {', '.join(self.names())})"
