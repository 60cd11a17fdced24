"""A name -> factory table: how strategies, compressors, models, data and benchmarks are chosen."""
from __future__ import annotations

from typing import Callable, Dict, Generic, List, TypeVar

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
        self._watchers: List[Callable[[], None]] = []

    def register(self, name: str):
        def deco(fn):
            before = self._table.get(name)
            self._table[name] = fn
            try:
                self._changed()
            except Exception:  # a watcher refused it (e.g. clashing knobs): the table stays as it was
                self._table.pop(name)
                if before is not None:
                    self._table[name] = before
                self._changed()
                raise
            return fn
        return deco

    def named(self, name: str):
        """`register` for a class that answers to its name: also sets `cls.name` (strategies, compressors)."""
        def deco(cls):
            cls.name = name
            return self.register(name)(cls)
        return deco

    def unregister(self, name: str) -> None:
        """Forget `name` (tests that register a made-up entry clean up with this)."""
        self._table.pop(name, None)
        self._changed()

    def watch(self, fn: Callable[[], None]) -> None:
        """Call `fn()` after every (un)registration (lab.config recomposes its knobs)."""
        self._watchers.append(fn)

    def _changed(self) -> None:
        for fn in self._watchers:
            fn()

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
