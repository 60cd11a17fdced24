"""The live view of a hyperparameter search (`lab.search`): each trial's learning curve (pruned trials
greyed, failed ones dotted red), and a parallel-coordinates plot of the knobs against the result.

`SearchView(search)` subscribes to the search, so it redraws whenever `search.poll()` changed
something: drive the search with `search.watch()` in a notebook (an asyncio task in the kernel's
loop, cells stay free) or `search.wait()` in a script. A reloaded search (`lab.search.load`)
draws once. Redraws happen at most `max_fps` times a second, one `batch_update` per figure.

Example:
    >>> s = Search.start(cluster, {"lr": [1e-3, 1e-2], "batch_size": [16, 64]}, pruner="asha")
    >>> view = SearchView(s); s.watch(); view
"""
from __future__ import annotations

import math
import time

import ipywidgets as W
import plotly.graph_objects as go

from lab import records
from lab.compare import PALETTE
from .base import Displayable, figure_grid

GREY, FAILED = "#c8c8c8", "#e45756"


class SearchView(Displayable):
    """Learning curves and knobs-vs-result of a search, live or reloaded."""

    def __init__(self, search, max_fps: float = 4.0):
        self.search, self.min_gap = search, 1.0 / max_fps
        metric = search.metric
        label = records.FIELDS[metric].label if metric in records.FIELDS else metric
        self.curves = go.FigureWidget(layout=dict(
            title="each trial's learning curve (grey: pruned)", height=340, margin=dict(l=50, r=10, t=40, b=40),
            xaxis_title="step", yaxis_title=label, showlegend=False))
        self.coords = go.FigureWidget(layout=dict(
            title=f"knobs against {label}", height=340, margin=dict(l=60, r=40, t=60, b=30)))
        self.coords.add_trace(go.Parcoords(dimensions=[]))
        self.status = W.HTML()
        self.widget = W.VBox([self.status, figure_grid([self.curves, self.coords])])
        self._drawn = -1.0
        self._traces = {}   # trial number -> trace index
        self.update(force=True)
        if hasattr(search, "subscribe"):
            search.subscribe(lambda s: self.update())

    def update(self, force: bool = False) -> None:
        """Redraw from the search's table (called back by the search after each poll that changed it)."""
        now = time.time()
        if not force and now - self._drawn < self.min_gap and not getattr(self.search, "done", True):
            return
        self._drawn = now
        s = self.search
        with self.curves.batch_update():
            for i, t in enumerate(s.trials):
                if t.number not in self._traces:
                    self.curves.add_scatter(x=[], y=[], mode="lines+markers", marker=dict(size=4))
                    self._traces[t.number] = len(self.curves.data) - 1
                tr = self.curves.data[self._traces[t.number]]
                tr.x, tr.y = [p[0] for p in t.curve], [p[1] for p in t.curve]
                color = {"pruned": GREY, "failed": FAILED}.get(t.state, PALETTE[t.number % len(PALETTE)])
                tr.line = dict(color=color, width=1 if t.state in ("pruned", "failed") else 2,
                               dash="dot" if t.state == "failed" else "solid")
                tr.marker.color = color
                name = f"#{t.number} " + ", ".join(f"{k.split('.')[-1]}={v}" for k, v in t.params.items())
                tr.name = name   # (read back only after batch_update: write from the local)
                tr.hovertemplate = name + f" ({t.state})<br>step %{{x}}: %{{y:.4f}}<extra></extra>"
        ended = [t for t in s.trials if t.value is not None and t.state in ("complete", "pruned")]
        with self.coords.batch_update():
            self.coords.data[0].dimensions = dimensions(s, ended)
            if ended:
                vals = [t.value for t in ended]
                self.coords.data[0].line = dict(color=vals, colorscale="Viridis", showscale=True,
                                                cmin=min(vals), cmax=max(vals) if max(vals) > min(vals) else min(vals) + 1e-9)
        c = s.counts() if hasattr(s, "counts") else {}
        b = s.best
        self.status.value = (f"<b>{s.info['method']}</b> search, pruner <b>{s.info['pruner']}</b>: "
                             f"{len(s.trials)}/{s.info.get('n_trials', len(s.trials))} trials, "
                             f"{c.get('running', 0) + c.get('pruning', 0)} running, {c.get('complete', 0)} complete, "
                             f"{c.get('pruned', 0)} pruned, {c.get('failed', 0)} failed; {s.total_steps} steps"
                             + (f"; best #{b.number} {s.metric} {b.value:.4f}" if b else ""))


def dimensions(s, trials) -> list:
    """Parallel-coordinates axes: one per knob (categorical knobs as ticks), then the result."""
    dims = []
    for k, space in s.info["space"].items():
        xs = [t.params[k] for t in trials]
        name = k.split(".")[-1]
        if isinstance(space, list) and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in space):
            labels = [str(v) for v in space]
            dims.append(dict(label=name, values=[labels.index(str(x)) for x in xs],
                             tickvals=list(range(len(labels))), ticktext=labels))
            continue
        lo, hi = (min(space), max(space)) if isinstance(space, list) else (space["low"], space["high"])
        log = (space.get("log") if isinstance(space, dict) else lo > 0 and hi / lo >= 100)
        if log:
            dims.append(dict(label=f"log10 {name}", values=[math.log10(x) for x in xs],
                             range=[math.log10(lo), math.log10(hi)]))
        else:
            dims.append(dict(label=name, values=xs, range=[lo, hi]))
    dims.append(dict(label=s.metric, values=[t.value for t in trials]))
    return dims
