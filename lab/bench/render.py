"""BENCHMARKS.md from saved results: `python -m lab bench --report`.

The document's prose is written by hand; every figure comes from `bench-results/NAME.json`.
Between the markers

    <!-- bench NAME -->
    ...
    <!-- /bench NAME -->

`render` writes what the saved full run of NAME measured: the command, date, machine, commit,
the table, each target met or missed with its spread, and the ratios. A bench with no saved
result renders as "not measured". `tests/test_bench.py` fails when the document differs from
its rendering, so a figure in it always has a saved run (and a command) behind it.
"""
from __future__ import annotations

import re
from pathlib import Path

from .report import cell, format_table, target_line
from .results import RESULTS, ROOT

DOC = ROOT / "BENCHMARKS.md"
BLOCK = re.compile(r"(<!-- bench (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /bench (?P=name) -->)", re.S)


def _during(result) -> str:
    """The load the machine carried while the bench ran (results saved since it is sampled)."""
    d = result.get("load_during")
    return f" ({d['min']:.1f} to {d['max']:.1f} during the run, mean {d['mean']:.1f})" if d else ""


def block(name: str, result) -> str:
    """The generated text for one bench (ends with a newline)."""
    if result is None:
        return (f"*Not measured: no saved full run (`bench-results/{name}.json`). "
                f"`python -m lab bench {name}` measures it.*\n")
    head = (f"`{result.get('command', 'python -m lab bench ' + name)}` — {result.get('date')}, "
            f"{result.get('machine')}, load average "
            f"{', '.join(f'{x:.1f}' for x in result.get('load_average', []))} at the start{_during(result)}, "
            f"commit `{_short(result.get('commit', 'unknown'))}`, {result.get('seconds', 0):.0f} s.")
    out = [head, ""]
    if result.get("note"):
        out += [result["note"], ""]
    out += [format_table(result.get("table", [])), ""]
    targets = result.get("targets", [])
    if targets:
        out += ["Targets:", ""] + [f"- {target_line(t)}" for t in targets] + [""]
    ratios = result.get("ratios", {})
    if ratios:
        out += ["Ratios:", ""] + [f"- {k}: {cell(v)}" for k, v in ratios.items()] + [""]
    return "\n".join(out)


def _short(commit: str) -> str:
    """'bf424e56fd38+dirty': 12 hex digits, and whether the tree differed from the commit."""
    head, plus, rest = str(commit).partition("+")
    return head[:12] + plus + rest


def render(text: str, folder=RESULTS) -> str:
    """`text` with every bench block replaced by what the saved results in `folder` render."""
    from .results import load
    return BLOCK.sub(lambda m: m.group(1) + block(m.group("name"), load(m.group("name"), folder)) + m.group(4),
                     text)


def names(text: str) -> list:
    """The benches the document has a block for."""
    return [m.group("name") for m in BLOCK.finditer(text)]


def write(doc=DOC, folder=RESULTS) -> bool:
    """Re-render `doc` in place; True when it changed."""
    doc = Path(doc)
    old = doc.read_text()
    new = render(old, folder)
    if new != old:
        doc.write_text(new)
    return new != old
