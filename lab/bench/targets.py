"""What a benchmark promises: targets it judges itself by, and the spread behind each figure.

A bench returns `Target`s beside its table; `python -m lab bench NAME` prints each as met or
missed with its figure and exits 1 when one that counts is missed. A target marked `noisy`
(a timing ratio, an accuracy difference between single runs) counts only in a full run: under
`--quick` it is printed with its spread but cannot fail the run, since the quick budget is too
small to keep it honest. Byte ratios and accuracy floors are not noisy and always count.

Example:
    >>> t = Target("topk 1% + EF payload ratio", 50.03, ">=", 50)
    >>> t.met, t.counts(quick=True)
    (True, True)
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Optional, Sequence

OPS = {">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t, ">": lambda v, t: v > t, "<": lambda v, t: v < t,
       "between": lambda v, t: t[0] <= v <= t[1]}


@dataclass
class Target:
    """One promise of a bench: `value op threshold` ("between": lo <= value <= hi, threshold = (lo, hi))."""
    name: str
    value: Optional[float]           # the measured figure; None (never reached, not measured) is a miss
    op: str
    threshold: object                # a number, or (lo, hi) for "between"
    noisy: bool = False              # machine load or seed noise can move it: judged in full runs only
    spread: Optional[dict] = None    # the rounds / seeds behind `value` (see `spread`, `seeds`)
    note: str = ""                   # why the target is what it is, or what a quick run cannot show
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"target {self.name!r}: op must be one of {', '.join(OPS)}, not {self.op!r}")

    @property
    def met(self) -> bool:
        v = self.value
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return False
        return OPS[self.op](v, self.threshold)

    def counts(self, quick: bool) -> bool:
        """Whether a miss fails the run: always, except a noisy target in a quick run."""
        return not (quick and self.noisy)

    def line(self, quick: bool) -> str:
        """One readable line: verdict, name, figure, comparison, spread."""
        verdict = "met" if self.met else ("MISSED" if self.counts(quick) else "missed")
        thr = f"{_num(self.threshold[0])}..{_num(self.threshold[1])}" if self.op == "between" else _num(self.threshold)
        op = "in" if self.op == "between" else self.op
        s = f"[{verdict}] {self.name}: {_num(self.value)} (target {op} {thr})"
        if self.spread:
            s += f"  {describe(self.spread)}"
        if quick and self.noisy:
            s += "  (quick run: reported, not judged)"
        return s

    def to_dict(self, quick: bool) -> dict:
        d = {"name": self.name, "value": self.value, "op": self.op,
             "threshold": list(self.threshold) if self.op == "between" else self.threshold,
             "noisy": self.noisy, "met": self.met, "judged": self.counts(quick)}
        if self.spread:
            d["spread"] = self.spread
        if self.note:
            d["note"] = self.note
        return d | self.extra


def spread(values: Sequence[float]) -> dict:
    """Rounds of one timing figure: min / median / max and every value (n >= 1)."""
    vals = [float(v) for v in values]
    return {"n": len(vals), "min": min(vals), "median": statistics.median(vals), "max": max(vals), "values": vals}


def seeds(values: Sequence[float]) -> dict:
    """Seeds of one accuracy (or count): mean / min / max and every value."""
    vals = [float(v) for v in values]
    return {"n": len(vals), "mean": statistics.fmean(vals), "min": min(vals), "max": max(vals), "values": vals}


def describe(s: dict) -> str:
    """'median 1.02 (min 0.98, max 1.07, n=3)' or 'mean 0.97 (min 0.96, max 0.98, n=3)'."""
    centre = "median" if "median" in s else "mean"
    return f"{centre} {_num(s[centre])} (min {_num(s['min'])}, max {_num(s['max'])}, n={s['n']})"


def judge(targets, quick: bool) -> bool:
    """True when every target that counts is met."""
    return all(t.met for t in targets if t.counts(quick))


def _num(v) -> str:
    if v is None:
        return "not reached"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
