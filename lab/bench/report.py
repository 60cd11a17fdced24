"""Printing a benchmark's result: a table, its ratios, its targets, and where / when it was measured."""
from __future__ import annotations

import json
import math
import time

from .. import provenance


HIDDEN = ("rounds raw",)  # row fields kept in the JSON but too long for a table


def machine() -> str:
    """`lab.provenance.machine()` as the one line a table heading shows."""
    m = provenance.machine()
    gpu = ", ".join(m["gpus"]) or "no GPU"
    return f"{m['arch']}, {m['cpus']} cores, {gpu}, torch {provenance.packages().get('torch', '?')}"


def cell(v) -> str:
    """A table cell: 4 significant figures, thousands grouped, a spread as 'centre (min-max)'."""
    if isinstance(v, dict) and "min" in v:
        centre = v.get("median", v.get("mean"))
        return f"{cell(centre)} ({cell(v['min'])}-{cell(v['max'])})"
    if isinstance(v, list):
        return "/".join(cell(x) for x in v)
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    return str(v)


def format_table(rows) -> str:
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r if k not in HIDDEN))
    widths = {c: max(len(c), *(len(cell(r.get(c, ""))) for r in rows)) for c in cols}
    head = "| " + " | ".join(c.ljust(widths[c]) for c in cols) + " |"
    sep = "|" + "|".join("-" * (widths[c] + 2) for c in cols) + "|"
    body = ["| " + " | ".join(cell(r.get(c, "")).ljust(widths[c]) for c in cols) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def print_result(result: dict, as_json: bool = False) -> None:
    result.setdefault("date", time.strftime("%Y-%m-%d"))
    result.setdefault("machine", machine())
    if as_json:
        print(json.dumps(result, indent=1, default=str))
        return
    print(f"## {result['name']}  ({result['date']}, {result['machine']}, {result.get('seconds', 0):.0f} s)")
    if result.get("note"):
        print(result["note"])
    print(format_table(result.get("table", [])))
    for k, v in result.get("ratios", {}).items():
        print(f"{k}: {cell(v)}")
    for t in result.get("targets", []):
        print(target_line(t))


def target_line(t: dict) -> str:
    """A saved target (`Target.to_dict`) as one line: verdict, figure, comparison, spread."""
    from .targets import Target
    keep = ("name", "value", "op", "threshold", "noisy", "spread", "note")
    tgt = Target(**{k: t.get(k) for k in keep if k in t})
    return tgt.line(quick=not t.get("judged", True))
