"""Printing a benchmark's result: a table, its ratios, and where / when it was measured."""
from __future__ import annotations

import json
import os
import platform
import time


def machine() -> str:
    import torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def format_table(rows) -> str:
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
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
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
