"""Knobs, each declared once: a config field's help, range or choices, whether it may change
mid-run, and how to show it, in one `knob(...)` call beside the code that uses it.

    @strategy("ssp")
    class SSP(AsyncPS):
        @dataclass
        class Options:
            staleness: int = knob(2, "steps a worker may run ahead of the slowest", range=(0, None), live=True)

Everything else reads these declarations: `validate(obj)` (one-line `ConfigError`s naming the
knob and what it accepts), the CLI's flags (`lab.cli`), the short names (`lab.config.ALIASES`),
the panel's widgets (`widgets.panel`) and the README's knob table (`markdown_table`).
`compose(cls, registry)` makes a config dataclass hold its own knobs plus the `Options` fields of
every component in a registry (strategies, compressors), flattened, and keeps it so when a
component registers later.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import typing
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from .errors import ConfigError

WIDGETS = ("slider", "log", "dropdown", "checkbox", "text")  # hints a front end may follow
INF = math.inf


def _fmt(x) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _bound(text: str, unbounded: float) -> float:
    text = text.strip()
    if text in ("", "inf", "-inf", "None"):
        return unbounded
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


@dataclass(frozen=True)
class Range:
    """An interval; each end closed unless `*_open`, infinite where absent."""
    lo: float = -INF
    hi: float = INF
    lo_open: bool = False
    hi_open: bool = False

    @classmethod
    def of(cls, spec) -> Optional["Range"]:
        """From `(lo, hi)` (closed ends, None = unbounded) or interval text: "(0, 10]", "[1, inf)"."""
        if spec is None or isinstance(spec, Range):
            return spec
        if isinstance(spec, str):
            m = re.fullmatch(r"\s*([\[(])([^,]*),([^\])]*)([\])])\s*", spec)
            if not m:
                raise ValueError(f"range {spec!r}: write it like '(0, 10]' or '[1, inf)'")
            return cls(_bound(m[2], -INF), _bound(m[3], INF), m[1] == "(", m[4] == ")")
        lo, hi = spec
        return cls(-INF if lo is None else lo, INF if hi is None else hi)

    def __contains__(self, x) -> bool:
        return (x > self.lo if self.lo_open else x >= self.lo) and (x < self.hi if self.hi_open else x <= self.hi)

    def text(self) -> str:
        """"in (0, 10]", ">= 1", "< 5" or "" (no bound): what messages and tables say."""
        if self.lo > -INF and self.hi < INF:
            return f"in {'(' if self.lo_open else '['}{_fmt(self.lo)}, {_fmt(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo > -INF:
            return f"{'>' if self.lo_open else '>='} {_fmt(self.lo)}"
        if self.hi < INF:
            return f"{'<' if self.hi_open else '<='} {_fmt(self.hi)}"
        return ""


@dataclass(frozen=True)
class Knob:
    """What a declaration says about one config field (kept in the field's metadata)."""
    help: str
    range: Optional[Range] = None
    choices: Union[Tuple, Callable[[], Sequence], None] = None  # a tuple, or a callable giving registry names
    live: bool = False          # may change while a run goes (`Run.set`, the panel)
    widget: Optional[str] = None  # one of WIDGETS; None: from the type
    flag: Optional[str] = None  # short name: CLI flag (`--flag-name`), alias and error name; None: the field's
    ui: Optional[Tuple] = None  # (lo, hi[, step]) for a slider where the range is open-ended or too wide
    note: str = ""              # said after what the knob accepts, e.g. "0 = off"
    label: str = ""             # the panel's words for it ("learning rate"); default: the short name

    def options(self) -> List:
        """The choices, evaluated (registry names are read now, so late registrations count)."""
        c = self.choices() if callable(self.choices) else self.choices
        return list(c or ())


def knob(default, help: str, *, range=None, choices=None, live: bool = False, widget: Optional[str] = None,
         flag: Optional[str] = None, ui: Optional[Tuple] = None, note: str = "", label: str = ""):
    """Declare a config field: a `dataclasses.field` whose metadata carries its `Knob`.

    Args:
        default: the value (a list is copied per instance).
        help: one line on what it does (the CLI's help, the panel's tooltip, the README).
        range: allowed numbers, `(lo, hi)` with closed ends (None = unbounded) or text such as
            "(0, 10]"; for a list, each element's range.
        choices: allowed values: a tuple, or a callable returning names (a registry's `names`).
        live: True when it may change mid-run.
        widget: "slider", "log", "dropdown", "checkbox" or "text" (default: from the type).
        flag: the short name (CLI `--flag`, alias, error messages); default the field's name.
        ui: slider bounds `(lo, hi[, step])` where `range` is open-ended.
        note: a few words said after the allowed values ("0 = off").
        label: the panel's label when the short name is too terse ("learning rate" for `lr`).
    Example:
        >>> lr: float = knob(0.003, "learning rate", range="(0, 10]", live=True, widget="log", ui=(1e-4, 1))
    """
    if widget is not None and widget not in WIDGETS:
        raise ValueError(f"widget {widget!r}: one of {', '.join(WIDGETS)}")
    meta = {"knob": Knob(help, Range.of(range), choices, live, widget, flag, ui, note, label)}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: copy.copy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# -- a knob in place: its field, type and path -------------------------------------------------------
def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


_KINDS = {bool: ("True or False", lambda x: isinstance(x, bool)),
          int: ("an integer", _is_int), float: ("a number", _is_num),
          str: ("a string", lambda x: isinstance(x, str))}
_PLURAL = {"an integer": "integers", "a number": "numbers", "a string": "strings", "True or False": "booleans"}


@dataclass(frozen=True)
class Entry:
    """One knob of a config tree: where it lives, its type and its declaration."""
    path: str                  # dotted path from the root config, e.g. "strategy.compression.ratio"
    name: str                  # the field's name
    type: Any                  # the annotation, resolved
    default: Any
    knob: Knob
    owners: Tuple[str, ...] = ()  # the components declaring it ("topk", "randomk"); () for common knobs

    @property
    def short(self) -> str:
        return self.knob.flag or self.name

    @property
    def flag(self) -> str:
        return "--" + self.short.replace("_", "-")

    @property
    def optional(self) -> bool:
        return typing.get_origin(self.type) is Union and type(None) in typing.get_args(self.type)

    @property
    def is_list(self) -> bool:
        return typing.get_origin(self._inner) in (list, List)

    @property
    def _inner(self):
        if self.optional:
            return next(a for a in typing.get_args(self.type) if a is not type(None))
        return self.type

    @property
    def base(self):
        """The scalar type: int, float, bool or str (a list's element type)."""
        t = self._inner
        return typing.get_args(t)[0] if typing.get_origin(t) in (list, List) else t

    def allowed(self) -> str:
        """What it accepts, as messages say it: "a number in (0, 10]", "one of keep, reset"."""
        k = self.knob
        if k.choices is not None:
            text = "one of " + ", ".join(str(c) for c in sorted(k.options(), key=str))
        else:
            text = _KINDS.get(self.base, (getattr(self.base, "__name__", str(self.base)),))[0]
            if k.range is not None and k.range.text():
                text += " " + k.range.text()
        if self.is_list:
            noun = _KINDS.get(self.base, ("values",))[0]
            text = "a list of " + _PLURAL.get(noun, noun) + text[len(noun):]
        if self.optional:
            text += " or None"
        return text + (f" ({k.note})" if k.note else "")

    def _scalar_ok(self, x) -> bool:
        k = self.knob
        if k.choices is not None:
            return x in k.options()
        ok = _KINDS.get(self.base, (None, lambda v: isinstance(v, self.base)))[1]
        return ok(x) and (k.range is None or x in k.range)

    def ok(self, value) -> bool:
        if value is None:
            return self.optional
        if self.is_list:
            return isinstance(value, (list, tuple)) and all(self._scalar_ok(x) for x in value)
        return self._scalar_ok(value)

    def check(self, value) -> None:
        """Raise the one-line ConfigError ("lr must be a number in (0, 10] (got -1.0)") unless ok."""
        if not self.ok(value):
            raise ConfigError(self.short, self.allowed(), value)

    def parse(self, text: str):
        """A value from command-line text (a list is comma-separated; "none" is None where allowed)."""
        if self.optional and text.strip().lower() == "none":
            return None
        convert = {bool: lambda s: {"true": True, "false": False}[s.strip().lower()]}.get(self.base, self.base)
        try:
            if self.is_list:
                return [convert(s) for s in text.split(",") if s.strip()]
            return convert(text)
        except (ValueError, KeyError):
            raise ConfigError(self.short, ("comma-separated: " if self.is_list else "") + self.allowed(),
                              text) from None

    @property
    def widget(self) -> str:
        """The widget hint, from the declaration or else from the type."""
        k = self.knob
        if k.widget:
            return k.widget
        if self.base is bool:
            return "checkbox"
        if k.choices is not None:
            return "dropdown"
        if self.base in (int, float) and not self.is_list and (k.ui or (k.range and k.range.text())):
            return "slider"
        return "text"

    def ui(self) -> Tuple[float, float, Optional[float]]:
        """(lo, hi, step) for a slider: the declared `ui`, else the finite range, else around the default."""
        if self.knob.ui:
            lo, hi, *step = self.knob.ui
            return lo, hi, (step[0] if step else None)
        r = self.knob.range or Range()
        lo = r.lo if r.lo > -INF else 0
        d = self.default if _is_num(self.default) else lo
        hi = r.hi if r.hi < INF else max(4 * d, lo + 10)
        return lo, hi, None


_HINTS: Dict[type, Dict[str, Any]] = {}


def _hints(cls) -> Dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _entry(cls, f: dataclasses.Field, prefix: str) -> Entry:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    owners = getattr(cls, "__knob_owners__", {}).get(f.name, ())
    return Entry(prefix + f.name, f.name, _hints(cls)[f.name], default, f.metadata["knob"], owners)


def entries(cls, prefix: str = "") -> Iterator[Entry]:
    """The knobs declared on one config dataclass (not those of nested configs)."""
    return (_entry(cls, f, prefix) for f in dataclasses.fields(cls) if "knob" in f.metadata)


def walk(cls, prefix: str = "") -> Iterator[Entry]:
    """Every knob under a config dataclass, nested configs included (`data.batch_size`, ...)."""
    for f in dataclasses.fields(cls):
        if "knob" in f.metadata:
            yield _entry(cls, f, prefix)
        elif f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
            yield from walk(f.default_factory, f"{prefix}{f.name}.")


def validate(obj) -> None:
    """Check every knob field of a config dataclass against its declaration (not nested configs)."""
    for e in entries(type(obj)):
        e.check(getattr(obj, e.name))


def defaults(*classes, **values) -> SimpleNamespace:
    """The declared defaults of some Options dataclasses, merged (later classes win), then `values`."""
    out = {}
    for c in classes:
        for f in dataclasses.fields(c) if c is not None else ():
            out[f.name] = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return SimpleNamespace(**{**out, **values})


# -- composing a config from registered components' Options ----------------------------------------
_GENERATED = ("__init__", "__repr__", "__eq__", "__hash__", "__match_args__", "__dataclass_fields__",
              "__dataclass_params__")


def _redefine(cls, fields: List[dataclasses.Field]) -> None:
    """Make dataclass `cls` (the same class object, so every reference to it stays good) have `fields`."""
    for name in list(cls.__dict__.get("__annotations__", {})):
        if name in cls.__dict__:
            delattr(cls, name)
    for name in _GENERATED:
        if name in cls.__dict__:
            delattr(cls, name)
    cls.__annotations__ = {f.name: f.type for f in fields}
    for f in fields:
        setattr(cls, f.name, f)
    _HINTS.pop(cls, None)
    dataclasses.dataclass(cls)


def compose(cls, registry, *, then: Optional[Callable[[], None]] = None) -> None:
    """Give config dataclass `cls` its own fields plus each registered component's `Options` fields.

    The union is flattened (`StrategyConfig.staleness`), in registry name order. A name declared by
    two components must be one declaration (share it: `Options = TopK.Options`, or subclass another
    component's Options); else TypeError. Re-done whenever the registry changes, then `then()` runs.
    """
    hints = typing.get_type_hints(cls)
    own = []
    for f in dataclasses.fields(cls):
        g = copy.copy(f)
        g.type = hints[f.name]
        own.append(g)
    taken = {f.name for f in own}

    def rebuild():
        extra: Dict[str, dataclasses.Field] = {}
        owners: Dict[str, List[str]] = {}
        for name in registry.names():
            opts = getattr(registry.get(name), "Options", None)
            if opts is None or not dataclasses.is_dataclass(opts):
                continue
            opt_hints = typing.get_type_hints(opts)
            for f in dataclasses.fields(opts):
                if f.name in taken:
                    raise TypeError(f"{registry.knob} {name!r}: option {f.name!r} clashes with {cls.__name__}'s own")
                if f.name in extra and extra[f.name].metadata.get("knob") is not f.metadata.get("knob"):
                    raise TypeError(f"{registry.knob} {name!r}: option {f.name!r} is declared by "
                                    f"{', '.join(owners[f.name])} too; share one declaration")
                if f.name not in extra:
                    g = copy.copy(f)
                    g.type = opt_hints[f.name]
                    extra[f.name] = g
                owners.setdefault(f.name, []).append(name)
        mine = [copy.copy(f) for f in own]  # its own knobs first, nested configs last (reads well in a repr)
        _redefine(cls, [f for f in mine if "knob" in f.metadata] + list(extra.values())
                  + [f for f in mine if "knob" not in f.metadata])
        cls.__knob_owners__ = {k: tuple(v) for k, v in owners.items()}
        if then is not None:
            then()

    registry.watch(rebuild)
    rebuild()


# -- the README's table ---------------------------------------------------------------------------
START, END = "<!-- knobs:start -->", "<!-- knobs:end -->"


def _type_name(e: Entry) -> str:
    name = getattr(e.base, "__name__", str(e.base))
    return ("list of " + name if e.is_list else name) + (" or None" if e.optional else "")


def markdown_table(root) -> str:
    """Every knob under config class `root` as a Markdown table (the README's, between START and END)."""
    rows = ["| flag | config path | default | accepts | live | what it does |", "| --- | --- | --- | --- | --- | --- |"]
    for e in walk(root):
        used = f" ({', '.join(e.owners)})" if e.owners else ""
        rows.append(f"| `{e.flag}` | `{e.path}` | `{e.default!r}` | {e.allowed()} | {'yes' if e.knob.live else ''} "
                    f"| {e.knob.help}{used} |")
    return "\n".join(rows)


def replace_section(text: str, table: str) -> str:
    """`text` with what lies between START and END replaced by `table`."""
    head, sep, rest = text.partition(START)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise ValueError(f"no {START} ... {END} section")
    return f"{head}{START}\n{table}\n{END}{tail}"


def section(text: str) -> str:
    """What lies between START and END (without the surrounding newlines)."""
    return text.partition(START)[2].partition(END)[0].strip("\n")
