"""Comparing runs: curves, a time-to-accuracy table, and CSV / JSON / standalone HTML exports.

Chapter 12 (the strategy arena) introduces it; `widgets.arena.Arena` draws these curves live and
`python -m lab compare` can write the same report. Everything here is a pure function of saved or
live runs (`lab.runs.RunData`): no widgets, and plotly is imported only to build figures.

Example:
    >>> from lab.runs import load_run, list_runs
    >>> from lab import compare
    >>> runs = [load_run(p) for p in list_runs("runs")]
    >>> compare.table(runs)            # one row per run
    >>> compare.to_html(runs, "arena.html")   # one file, opens with no server
"""
from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from . import records

X_AXES = {"step": "step", "t": records.axis_title("t"), "bytes": "cumulative MB sent + received (all workers)"}


def metric_of(runs) -> Optional[str]:
    """The held-out metric the runs share (`lab.records.held_out()`, in that order), or None."""
    runs = list(runs)
    for key in records.held_out():
        if any(r.get(key) is not None for run in runs for r in run.records):
            return key
    return None


def user_changes(record: dict) -> dict:
    """The knobs changed at this record's step (the `changes` field), without internal commands."""
    ch = record.get("changes") or []
    out: dict = {}
    for part in ch if isinstance(ch, list) else [ch]:
        out.update({k: v for k, v in part.items() if not k.startswith("_")})
    m = record.get("membership")   # an elastic run's workers changed here (lab.elastic): marked the same way
    if m:
        out["workers"] = m["workers"]
        out.update({k: m[k] for k in ("left", "joined") if m.get(k)})
        if m.get("steps_lost"):
            out["steps lost"] = m["steps_lost"]
    return out


def change_points(records: Sequence[dict]) -> List[tuple]:
    """[(step, changes)] once per step where a live change took effect (every worker marks it)."""
    seen: Dict[int, dict] = {}
    for r in records:
        ch = user_changes(r)
        if ch and r["step"] not in seen:
            seen[r["step"]] = ch
    return sorted(seen.items())


def describe(changes: dict) -> str:
    """'lr=0.02, strategy=async' for a marker label."""
    return ", ".join(f"{k}={_short(v)}" for k, v in changes.items())


def _short(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        return "[" + ",".join(_short(x) for x in v) + "]"
    return str(v)


def per_step(run, key: str = "loss") -> dict:
    """Mean of `key` over the workers at each step, with when and how many bytes it took.

    Returns {"step": [...], "t": [...], "bytes": [...], key: [...]} where `t` is the slowest
    worker's clock at that step and `bytes` the cumulative MB sent + received by all workers.
    """
    steps: Dict[int, list] = {}
    for r in run.records:
        steps.setdefault(r["step"], []).append(r)
    out = {"step": [], "t": [], "bytes": [], key: []}
    total = 0.0
    for s in sorted(steps):
        rows = steps[s]
        total += sum(r.get("bytes_sent", 0) + r.get("bytes_recv", 0) for r in rows) / 1e6
        vals = [r[key] for r in rows if r.get(key) is not None]
        if not vals:
            continue
        out["step"].append(s)
        out["t"].append(max(r["t"] for r in rows))
        out["bytes"].append(total)
        out[key].append(sum(vals) / len(vals))
    return out


def curve_distance(a, b, key: str = "loss", rank: int = 0) -> dict:
    """How far run `b`'s curve is from run `a`'s (`python -m lab run --from` repeats a run and reports this).

    `a` and `b` are runs (anything with `.records`) or lists of records. Over the steps where worker
    `rank` recorded `key` in both: `max_abs` and `mean_abs`, the largest and mean absolute difference;
    `only_a` / `only_b` count the steps one has and the other lacks. The final held-out metric (the
    first of `lab.records.held_out()` either carries) of each and `final_diff`, their absolute
    difference (None when one lacks it).
    `exact` is True when the steps are the same, every value is identical and so is the final metric.
    """
    ra, rb = (list(getattr(x, "records", x)) for x in (a, b))

    def curve(rows):
        return {r["step"]: r[key] for r in sorted(rows, key=lambda r: (r["step"], r["rank"]))
                if r["rank"] == rank and r.get(key) is not None}

    def final(rows, metric):
        vals = [r[metric] for r in sorted(rows, key=lambda r: (r["step"], r["rank"])) if r.get(metric) is not None]
        return vals[-1] if vals else None

    def diff(x, y):
        return 0.0 if x == y or (x != x and y != y) else abs(x - y)  # NaN == NaN here: the same divergence

    ca, cb = curve(ra), curve(rb)
    common = sorted(set(ca) & set(cb))
    d = [diff(ca[s], cb[s]) for s in common]
    metric = next((k for k in records.held_out() if final(ra, k) is not None or final(rb, k) is not None), None)
    fa, fb = (final(ra, metric), final(rb, metric)) if metric else (None, None)
    out = {"key": key, "rank": rank, "steps": len(common), "only_a": len(set(ca) - set(cb)),
           "only_b": len(set(cb) - set(ca)), "max_abs": max(d) if d else None,
           "mean_abs": sum(d) / len(d) if d else None, "metric": metric, "final_a": fa, "final_b": fb,
           "final_diff": diff(fa, fb) if fa is not None and fb is not None else None}
    out["exact"] = bool(common) and not out["only_a"] and not out["only_b"] and out["max_abs"] == 0 \
        and (metric is None or out["final_diff"] == 0)
    return out


def format_distance(d: dict) -> str:
    """One line: 'exact repeat: ...' or 'differs: ...' with the figures of `curve_distance`."""
    if not d["steps"]:
        return f"no common steps with {d['key']} on worker {d['rank']} to compare"
    head = "exact repeat" if d["exact"] else "differs"
    line = (f"{head}: {d['key']} on worker {d['rank']} over {d['steps']} common steps: max |diff| {d['max_abs']:.3g}, "
            f"mean |diff| {d['mean_abs']:.3g}")
    if d["only_a"] or d["only_b"]:
        line += f"; steps only in the original {d['only_a']}, only in the repeat {d['only_b']}"
    if d["final_diff"] is not None:
        line += f"; final {d['metric']} {d['final_a']:.4f} -> {d['final_b']:.4f} (|diff| {d['final_diff']:.3g})"
    elif d["metric"]:
        line += f"; final {d['metric']} only in the {'original' if d['final_a'] is not None else 'repeat'}"
    return line


def smooth(values: Sequence[float], weight: float) -> List[float]:
    """Debiased exponential moving average (TensorBoard's smoothing); weight 0 = raw."""
    if weight <= 0 or not values:
        return list(values)
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc = weight * acc + (1 - weight) * v
        out.append(acc / (1 - weight ** (i + 1)))
    return out


def default_target(runs, metric: Optional[str] = None) -> Optional[float]:
    """A target every good run should reach: 90% of the best final accuracy (110% of the best perplexity)."""
    metric = metric or metric_of(runs)
    finals = [run.final(metric) for run in runs] if metric else []
    finals = [f for f in finals if f is not None]
    if not finals:
        return None
    higher = records.higher_is_better(metric)
    return round(0.9 * max(finals), 3) if higher else round(1.1 * min(finals), 3)


def table(runs, target: Optional[float] = None, metric: Optional[str] = None) -> List[dict]:
    """One row per run: strategy, compressor, workers, steps, wall time, final metric,
    time to `target`, bytes per step and throughput. `target` defaults to `default_target`."""
    runs = list(runs)
    metric = metric or metric_of(runs)
    if target is None and metric:
        target = default_target(runs, metric)
    rows = []
    for run in runs:
        s = run.summary()
        per = s["per_worker"].values()
        row = {
            "run": run.label, "id": run.id, "strategy": s["strategy"], "compressor": s["compressor"],
            "workers": s["workers"], "steps": s["steps"], "status": s["status"],
            "wall_s": round(s["wall_s"], 3),
            "throughput": round(s["throughput_total"], 1),
            # every published byte figure includes the transport's framing; the algorithm's bytes and
            # the framing stay visible as their own columns, a hosted server as a node of its own
            "wire_B_per_sample": round(s["wire"]["per_sample"], 1),
            "algorithm_B_per_step": round(sum(p["bytes_sent_per_step"] for p in per) / max(1, len(per))),
            "framing_B_per_step": round(sum(p["framing_bytes_per_step"] for p in per) / max(1, len(per))),
            "server_B_per_step": next((round(n["wire_per_step"]) for n in s["wire"]["nodes"]
                                       if n["node"].startswith("server")), None),
            "sim_link_s": round(sum(p["sim_link_s"] for p in per), 3),
        }
        if metric:
            final = run.final(metric)
            reached = run.time_to(metric, target) if target is not None else None
            row.update({"metric": metric, f"final_{metric}": None if final is None else round(final, 4),
                        "target": target, "time_to_target_s": None if reached is None else round(reached, 3)})
        rows.append(row)
    return rows


def to_csv(runs, path, target: Optional[float] = None) -> Path:
    """Write the comparison table (one row per run) as CSV; returns the path."""
    rows = table(runs, target)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    return path


def to_json(runs, path, target: Optional[float] = None) -> Path:
    """Write the table plus every run's config, live changes and per-step curves as JSON."""
    runs = list(runs)
    metric = metric_of(runs)
    doc = {"metric": metric, "target": target if target is not None else default_target(runs, metric),
           "table": table(runs, target, metric), "runs": []}
    for run in runs:
        loss = per_step(run, "loss")
        entry = {"id": run.id, "label": run.label, "config": run.cfg.to_dict(),
                 "summary": run.summary(), "changes": change_points(run.records), "loss": loss}
        if metric:
            entry[metric] = per_step(run, metric)
        doc["runs"].append(entry)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=records.jsonable))
    return path


# -- figures (plotly) -------------------------------------------------------------------------
PALETTE = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880",
           "#ff97ff", "#fecb52"]


def figures(runs, smoothing: float = 0.6, metric: Optional[str] = None) -> Dict[str, "object"]:
    """The arena's four overlays as plotly `go.Figure`s, one trace per run.

    Keys: "loss_time", "loss_bytes", "metric_time", "bytes_step". Live changes are marked with
    a dotted vertical line in the run's colour.
    """
    import plotly.graph_objects as go
    runs = list(runs)
    metric = metric or metric_of(runs)
    loss = records.axis_title("loss") + ", mean over workers"
    figs = {
        "loss_time": _fig(go, "training loss against time", X_AXES["t"], loss),
        "loss_bytes": _fig(go, "training loss against bytes", X_AXES["bytes"], loss),
        "metric_time": _fig(go, f"{records.FIELDS[metric].label if metric else 'test metric'} against time",
                            X_AXES["t"], records.axis_title(metric) if metric else ""),
        "bytes_step": _fig(go, "bytes on the wire per sample (every node, framing included)", "run",
                           "bytes per sample"),
    }
    for i, run in enumerate(runs):
        color = PALETTE[i % len(PALETTE)]
        for name, tr in traces(run, smoothing, metric).items():
            tr.update(marker_color=color) if name == "bytes_step" else tr.update(line_color=color)
            figs[name].add_trace(go.Bar(**tr) if name == "bytes_step" else go.Scatter(**tr))
        for step, ch in change_points(run.records):
            for name, xkey in (("loss_time", "t"), ("loss_bytes", "bytes")):
                x = _x_at(run, step, xkey)
                if x is not None:
                    figs[name].add_vline(x=x, line_dash="dot", line_color=color, opacity=0.7,
                                         annotation_text=describe(ch), annotation_font_size=9)
    return figs


def traces(run, smoothing: float = 0.6, metric: Optional[str] = None) -> Dict[str, dict]:
    """The trace properties (x, y, name, ...) one run contributes to each arena figure."""
    loss = per_step(run, "loss")
    y = smooth(loss["loss"], smoothing)
    out = {"loss_time": dict(x=loss["t"], y=y, name=run.label, mode="lines"),
           "loss_bytes": dict(x=loss["bytes"], y=y, name=run.label, mode="lines", showlegend=False)}
    m = per_step(run, metric) if metric else {"t": [], metric: []}
    out["metric_time"] = dict(x=m["t"], y=m.get(metric, []), name=run.label, mode="lines+markers", showlegend=False)
    wire = run.wire()
    out["bytes_step"] = dict(x=[run.label], y=[wire["per_sample"]], name=run.label, showlegend=False,
                             hovertext=[", ".join(f"{n['node']}: {n['wire_per_step'] / 1e3:.1f} kB/step"
                                                  for n in wire["nodes"])])
    return out


def _x_at(run, step: int, xkey: str):
    curve = per_step(run, "loss")
    for s, x in zip(curve["step"], curve[xkey]):
        if s >= step:
            return x
    return None


def _fig(go, title, xtitle, ytitle):
    return go.Figure(layout=dict(title=dict(text=title, font_size=14), height=320,
                                 margin=dict(l=50, r=20, t=40, b=40), template="plotly_white",
                                 xaxis_title=xtitle, yaxis_title=ytitle, legend=dict(font_size=10)))


def table_html(rows: List[dict]) -> str:
    """The comparison table as a small HTML table."""
    if not rows:
        return "<p>No runs yet.</p>"
    cols = list(dict.fromkeys(k for row in rows for k in row if k not in ("id", "metric")))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in cols) + "</tr>"
                   for row in rows)
    return (f"<table class='lab-table' style='border-collapse:collapse;font-size:12px'>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _cell(v):
    return "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def to_html(runs, path, target: Optional[float] = None, title: str = "Strategy arena") -> Path:
    """One standalone HTML file (plotly.js inlined: opens with no server) with the overlays and table."""
    runs = list(runs)
    figs = figures(runs)
    parts = []
    for i, fig in enumerate(figs.values()):
        parts.append(fig.to_html(include_plotlyjs=(i == 0), full_html=False,
                                 config={"displaylogo": False}, default_width="100%"))
    doc = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:20px}} .grid{{display:grid;grid-template-columns:1fr 1fr;gap:8px}}
.lab-table td,.lab-table th{{border:1px solid #ccc;padding:3px 6px}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{len(runs)} runs: {html.escape(", ".join(r.label for r in runs))}. Simulated link time, where a run had one,
is a model of a slower network, not a measurement.</p>
{table_html(table(runs, target))}
<div class="grid">{''.join(f'<div>{p}</div>' for p in parts)}</div>
</body></html>"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
    return path
