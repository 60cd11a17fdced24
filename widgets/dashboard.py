"""The live per-worker dashboard: plotly FigureWidgets fed by a run's records (chapter 00 onwards).

`LiveDashboard(run)` builds its figures once and subscribes to the run; the run's `watch()` task
polls in the notebook's event loop, so cells stay free while curves grow. Records are buffered
and drawn at most `max_fps` times a second inside `batch_update()` (one message per figure per
redraw); none is dropped, only long curves are averaged into at most `max_points` points for
display. `dashboard.stats` says what the dashboard costs: seconds spent per second of training
and the lag between a record being produced and drawn.

Example:
    >>> run = cluster.train(RunConfig(steps=300))
    >>> LiveDashboard(run)          # display it; it attaches and starts watching
"""
from __future__ import annotations

import asyncio
import time
from typing import Dict, List

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from lab import records
from lab.compare import PALETTE, change_points, describe
from .base import Displayable, figure_grid

X_MODES = {"step": "step", "seconds": records.axis_title("t"), "bytes": "cumulative MB sent + received"}
SCALE = {"": 1.0, "K": 1e-3, "m": 1e3}   # unit prefix -> factor applied for display
# Per-worker line figures: name -> (title, record fields, unit prefix); units and labels come from
# the fields' declarations in lab.records (the fields of one figure share a unit).
LINES = {
    "loss": (records.FIELDS["loss"].label, ("loss",), ""),
    "throughput": (records.FIELDS["throughput"].label, ("throughput",), ""),
    "bytes": ("bytes per step (solid: sent on the wire, framing included; dotted: received)",
              ("wire_bytes_sent", "bytes_recv"), "K"),
}
BREAKDOWN = ("compute_s", "comm_s", "wait_s", "sim_link_s", "overlap_s")   # stacked: where a step's time went
BREAKDOWN_COLORS = ("#4c78a8", "#f58518", "#bab0ac", "#e45756", "#f58518")
OVERLAPPED = {"overlap_s"}   # drawn hatched: communication hidden behind compute, not extra time
PLOTTED = tuple(dict.fromkeys(f for _, fields, _ in LINES.values() for f in fields)) + BREAKDOWN


def y_title(fields, unit: str = "samples", prefix: str = "") -> str:
    """A line figure's y axis: the field's label and unit, or only the unit when it shows several."""
    if len(fields) == 1:
        return records.axis_title(fields[0], unit, prefix)
    return prefix + records.FIELDS[fields[0]].unit.format(unit=unit)


def _lfilter():
    try:
        from scipy.signal import lfilter
        return lfilter
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        return None


class LiveDashboard(Displayable):
    """Per-worker loss, throughput, bytes, time breakdown, staleness and test metric, live.

    Args:
        run: a live `lab.runs.Run` (attached and watched at once) or a saved `RunData`
            (drawn whole); None to attach later.
        max_fps: at most this many redraws a second; records arriving in between are buffered.
        max_points: longer curves are averaged into this many points for display (records are kept).
        x: x axis, "step", "seconds" or "bytes" (cumulative MB); a toggle changes it.
        smoothing: exponential smoothing weight in [0, 0.99]; a slider changes it.
        window: the time breakdown shows the mean over each worker's last `window` steps.
    Attributes:
        records: every record received, in arrival order.
        stats: what the dashboard costs (see `stats`).
        widget: the ipywidgets box (displaying the dashboard displays it).
    """

    def __init__(self, run=None, *, max_fps: float = 2.0, max_points: int = 600, x: str = "step",
                 smoothing: float = 0.0, window: int = 50, height: int = 260):
        self.max_fps, self.max_points, self.window, self.height = max_fps, max_points, window, height
        self.run = None
        self._lfilter = _lfilter()
        self.x_toggle = W.ToggleButtons(options=[(k, k) for k in X_MODES], value=x, description="x axis",
                                        style={"button_width": "70px"})
        self.smoothing = W.FloatSlider(value=smoothing, min=0.0, max=0.99, step=0.01, description="smoothing",
                                       continuous_update=False)
        self.header = W.HTML()
        self.x_toggle.observe(lambda _: self.redraw(), "value")
        self.smoothing.observe(lambda _: self.redraw(), "value")
        self._reset()
        self.widget = W.VBox([self.header, W.HBox([self.x_toggle, self.smoothing]),
                              figure_grid(self.figs.values())],
                             layout=W.Layout(width="100%"))
        if run is not None:
            self.attach(run)

    # -- figures ----------------------------------------------------------------------------
    def _figure(self, title, ytitle, xtitle="step", **layout):
        base = dict(title=dict(text=title, font_size=13), height=self.height, margin=dict(l=50, r=10, t=36, b=36),
                    template="plotly_white", xaxis_title=xtitle, yaxis_title=ytitle, showlegend=False,
                    uirevision="keep")
        return go.FigureWidget(layout={**base, **layout})

    def _reset(self):
        """Empty data and (re)built figures; the boxes keep the same FigureWidget objects."""
        self.records: List[dict] = []
        self._pending: List[tuple] = []     # (record, arrival time) not drawn yet
        self._cols: Dict[int, Dict[str, list]] = {}
        self._stale: Dict[int, Dict[int, int]] = {}
        self._metric_rows: List[dict] = []
        self._changes: List[tuple] = []
        self._shapes_key = None
        self._last_draw = 0.0
        self._timer = None
        self._lag: List[float] = []
        self._busy = 0.0
        self._draws = 0
        self._t_first = self._t_last = None
        self._device_now: Dict[int, dict] = {}   # rank -> the latest record's GPU figures
        if not hasattr(self, "figs"):
            self.figs = {name: self._figure(title, y_title(fields, prefix=prefix))
                         for name, (title, fields, prefix) in LINES.items()}
            self.figs["breakdown"] = self._figure("time per step (mean of last steps)",
                                                  "m" + records.FIELDS[BREAKDOWN[0]].unit, "worker",
                                                  barmode="stack", showlegend=True,
                                                  legend=dict(orientation="h", y=-0.25, font_size=10))
            self.figs["staleness"] = self._figure("staleness: steps at each value", "steps",
                                                  records.axis_title("staleness"), barmode="stack")
            self.figs["metric"] = self._figure("test metric (rank 0)", "")
        for f in self.figs.values():
            with f.batch_update():
                f.data = []
                f.layout.shapes = []
                f.layout.annotations = []
        self._ranks: List[int] = []

    def _add_worker(self, rank: int):
        """One trace per worker in every per-worker figure, in the worker's colour."""
        color = PALETTE[rank % len(PALETTE)]
        name = f"worker {rank}"
        for fig_name, (_, fields, _) in LINES.items():
            for i, field in enumerate(fields):
                self.figs[fig_name].add_scatter(x=[], y=[], mode="lines", name=name, legendgroup=name,
                                                line=dict(color=color, width=1.5, dash="dot" if i else "solid"),
                                                meta=[rank, field])
        self.figs["staleness"].add_bar(x=[], y=[], name=name, marker_color=color, meta=[rank])
        self._ranks.append(rank)
        self._cols[rank] = {k: [] for k in ("step", "t", "bytes", *PLOTTED)}
        self._stale[rank] = {}

    # -- feeding ----------------------------------------------------------------------------
    def attach(self, run, watch: bool = True) -> "LiveDashboard":
        """Show `run` (live or saved): draw what it has, subscribe to the rest and start watching."""
        if self.run is not None and self.run is not run:
            self._reset()
        self.run = run
        if run.records:
            self.feed(list(run.records), now=True)
        if hasattr(run, "subscribe"):
            run.subscribe(self._on_records)
            if watch and not run.done:
                try:  # the end of a run brings no record: redraw the header when watching ends
                    run.watch().add_done_callback(lambda _: self.flush())
                except RuntimeError:  # no event loop (a plain script): the caller polls
                    pass
        self.flush()
        return self

    def _on_records(self, run, new):
        self.feed(new, now=run.done)

    def feed(self, records, now: bool = False) -> None:
        """Buffer records; redraw if the last redraw is older than 1/max_fps (or `now`)."""
        t0 = time.perf_counter()
        arrival = time.time()
        for r in records:
            self._pending.append((r, arrival))
        self.records.extend(records)
        self._busy += time.perf_counter() - t0
        due = time.monotonic() - self._last_draw >= 1.0 / self.max_fps
        if now or due:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:  # draw the leftovers even if no record follows
                delay = 1.0 / self.max_fps - (time.monotonic() - self._last_draw)
                self._timer = loop.call_later(max(0.0, delay), self.flush)

    def flush(self) -> None:
        """Draw every buffered record now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        t0 = time.perf_counter()
        pending, self._pending = self._pending, []
        for r, _ in pending:
            self._ingest(r)
        self._draw()
        done = time.time()
        for r, arrival in pending:  # produced at r["wall"] when the engine stamps it, else on arrival
            self._lag.append(done - r.get("wall", arrival))
        self._last_draw = time.monotonic()
        self._busy += time.perf_counter() - t0
        self._draws += 1

    def _ingest(self, r: dict) -> None:
        rank = r["rank"]
        if rank not in self._cols:
            self._add_worker(rank)
        c = self._cols[rank]
        self._device_now[rank] = {k: r.get(k) for k in ("mem_mb", "mem_peak_mb", "util_pct")}
        prev = c["bytes"][-1] if c["bytes"] else 0.0
        c["step"].append(r["step"])
        c["t"].append(r["t"])
        c["bytes"].append(prev + (r.get("bytes_sent", 0) + r.get("bytes_recv", 0)) / 1e6)
        if "wire_bytes_sent" not in r and "bytes_sent" in r:  # a run saved before the field existed
            r = {**r, "wire_bytes_sent": r["bytes_sent"] + r.get("framing_bytes", 0)}
        for k in PLOTTED:
            v = r.get(k)
            c[k].append(np.nan if v is None else float(v))
        if r.get("staleness") is not None:
            s = int(r["staleness"])
            self._stale[rank][s] = self._stale[rank].get(s, 0) + 1
        if any(r.get(k) is not None for k in records.held_out()):
            self._metric_rows.append(r)
        if r.get("changes") or r.get("membership"):  # a live change, or an elastic run's workers changing
            self._changes = change_points([*self._change_recs(), r])
        self._t_first = r["t"] if self._t_first is None else min(self._t_first, r["t"])
        self._t_last = r["t"] if self._t_last is None else max(self._t_last, r["t"])

    def _change_recs(self):
        return [{"step": s, "changes": [ch]} for s, ch in self._changes]

    # -- drawing ----------------------------------------------------------------------------
    def redraw(self) -> None:
        """Redraw everything (after the x axis or the smoothing changed)."""
        self._shapes_key = None
        self.flush()

    def _xs(self, rank: int) -> np.ndarray:
        key = {"step": "step", "seconds": "t", "bytes": "bytes"}[self.x_toggle.value]
        return np.asarray(self._cols[rank][key], dtype=float)

    def _smooth(self, y: np.ndarray) -> np.ndarray:
        w = self.smoothing.value
        if w <= 0 or len(y) == 0:
            return y
        y = np.where(np.isnan(y), 0.0, y)
        if self._lfilter is not None:
            acc = self._lfilter([1 - w], [1, -w], y)
        else:
            acc = np.array(_ema(y, w))
        return acc / (1 - w ** np.arange(1, len(y) + 1))

    def _thin(self, x: np.ndarray, y: np.ndarray):
        """Average long curves into at most max_points points (display only)."""
        n = len(x)
        if n <= self.max_points:
            return x, y
        edges = np.linspace(0, n, self.max_points + 1).astype(int)
        return np.add.reduceat(x, edges[:-1]) / np.diff(edges), np.add.reduceat(y, edges[:-1]) / np.diff(edges)

    def _draw(self) -> None:
        xtitle = X_MODES[self.x_toggle.value]
        unit = self.records[0].get("unit", "samples") if self.records else "samples"
        for name, (_, fields, prefix) in LINES.items():
            fig = self.figs[name]
            with fig.batch_update():
                for tr in fig.data:
                    rank, field = tr.meta
                    y = np.asarray(self._cols[rank][field]) * SCALE[prefix]
                    tr.x, tr.y = self._thin(self._xs(rank), self._smooth(y))
                fig.layout.xaxis.title.text = xtitle
                fig.layout.yaxis.title.text = y_title(fields, unit, prefix)
        self._draw_breakdown()
        self._draw_staleness()
        self._draw_metric(xtitle)
        self._draw_markers()
        self._draw_header()

    def _draw_breakdown(self):
        fig = self.figs["breakdown"]
        labels = [f"w{r}" for r in self._ranks]
        with fig.batch_update():
            if len(fig.data) != len(BREAKDOWN):
                fig.data = []
                for field, color in zip(BREAKDOWN, BREAKDOWN_COLORS):
                    fig.add_bar(x=[], y=[], name=records.FIELDS[field].label, marker_color=color, meta=[field],
                                **({"marker_pattern_shape": "/", "opacity": 0.45} if field in OVERLAPPED else {}))
            for tr in fig.data:
                tr.x = labels
                tr.y = [SCALE["m"] * _mean(self._cols[r][tr.meta[0]][-self.window:]) for r in self._ranks]

    def _draw_staleness(self):
        fig = self.figs["staleness"]
        with fig.batch_update():
            for tr in fig.data:
                counts = self._stale[tr.meta[0]]
                tr.x, tr.y = list(counts), list(counts.values())

    def _draw_metric(self, xtitle):
        fig = self.figs["metric"]
        rows = self._metric_rows
        keys = [k for k in records.held_out() if any(r.get(k) is not None for r in rows)][:1]
        if not keys:
            return
        key = keys[0]
        with fig.batch_update():
            if not fig.data:
                fig.add_scatter(x=[], y=[], mode="lines+markers", name=key, line=dict(color="#222"))
            pts = [r for r in rows if r.get(key) is not None]
            tr = fig.data[0]
            tr.x = [self._x_of(r) for r in pts]
            tr.y = [r[key] for r in pts]
            f = records.FIELDS[key]
            fig.layout.title.text = f"{f.label} (held-out, rank 0; {f.better} is better)"
            fig.layout.yaxis.title.text = records.axis_title(key)
            fig.layout.xaxis.title.text = xtitle

    def _x_of(self, r: dict):
        """The x value of a record under the current x mode (bytes: that worker's cumulative MB)."""
        mode = self.x_toggle.value
        if mode == "step":
            return r["step"]
        if mode == "seconds":
            return r["t"]
        c = self._cols[r["rank"]]
        i = int(np.searchsorted(c["step"], r["step"]))
        return c["bytes"][min(i, len(c["bytes"]) - 1)]

    def _marker_x(self, step: int):
        rank = self._ranks[0] if self._ranks else None
        if rank is None:
            return None
        c = self._cols[rank]
        i = int(np.searchsorted(c["step"], step))
        if i >= len(c["step"]):
            return None
        key = {"step": "step", "seconds": "t", "bytes": "bytes"}[self.x_toggle.value]
        return c[key][i]

    def _draw_markers(self):
        key = (self.x_toggle.value, tuple(s for s, _ in self._changes))
        if key == self._shapes_key or not self._changes:
            return
        self._shapes_key = key
        shapes, notes = [], []
        for step, ch in self._changes:
            x = self._marker_x(step)
            if x is None:
                self._shapes_key = None  # not drawn yet: try again next time
                continue
            shapes.append(dict(type="line", x0=x, x1=x, y0=0, y1=1, xref="x", yref="paper",
                               line=dict(color="#555", width=1, dash="dot")))
            notes.append(dict(x=x, y=1, xref="x", yref="paper", text=describe(ch), showarrow=False,
                              xanchor="left", yanchor="top", font=dict(size=9, color="#555")))
        for name in (*LINES, "metric"):
            with self.figs[name].batch_update():
                self.figs[name].layout.shapes = shapes
                self.figs[name].layout.annotations = notes

    def _draw_header(self):
        run = self.run
        s = self.stats
        if run is None:
            title = "records fed by hand"
        else:
            status = getattr(run, "status", run.meta.get("status", "saved"))
            title = f"<b>{run.label}</b> · {run.cfg.strategy.name} / {run.cfg.strategy.compression.name} · {status}"
            if run.meta.get("error"):
                title += f" · <span style='color:#b00'>{run.meta['error']}</span>"
        self.header.value = (f"{title} · {len(self._ranks)} workers · {s['records']} records · "
                             f"<span style='color:#888'>dashboard: {1e3 * s['busy_per_s']:.1f} ms per training s, "
                             f"lag p50 {s['lag_p50_ms']:.0f} ms</span>"
                             + devices_html(run.meta if run is not None else {}, self._device_now))

    # -- cost ---------------------------------------------------------------------------------
    @property
    def stats(self) -> dict:
        """What the dashboard costs.

        records / draws: received and redraws so far. busy_s: seconds spent in the dashboard
        (buffering, ingesting, building traces; the frontend's rendering is not included).
        busy_per_s: busy_s per second of training (the span of the records' `t`). lag_*_ms: from
        a record being produced (its `wall` stamp if the engine sets one, else its arrival in
        the notebook) until it was drawn.
        """
        span = (self._t_last - self._t_first) if self._t_first is not None else 0.0
        lag = np.asarray(self._lag) * 1e3 if self._lag else np.zeros(1)
        return {"records": len(self.records), "draws": self._draws, "busy_s": self._busy,
                "busy_per_s": self._busy / span if span > 0 else 0.0,
                "lag_p50_ms": float(np.percentile(lag, 50)), "lag_p95_ms": float(np.percentile(lag, 95)),
                "lag_max_ms": float(lag.max())}

    # -- display --------------------------------------------------------------------------------
    def __repr__(self):
        return f"<LiveDashboard: {len(self._ranks)} workers, {len(self.records)} records>"


def devices_html(meta: dict, now: Dict[int, dict]) -> str:
    """The data plane and each worker's device, memory, peak and utilisation ("n/a" where not reported)."""
    from lab.devices import na
    devs = {d["rank"]: d for d in meta.get("devices") or ()}
    ranks = sorted(set(devs) | set(now))
    if not ranks:
        return ""
    cells = []
    for r in ranks:
        d, f = devs.get(r, {}), now.get(r, {})
        cells.append(f"worker {r}: {d.get('device', '?')} ({d.get('device_name', '?')}), "
                     f"mem {na(f.get('mem_mb'))} MB, peak {na(f.get('mem_peak_mb'))} MB, util {na(f.get('util_pct'))} %")
    plane = f"data plane: {meta['data_plane']} · " if meta.get("data_plane") else ""
    return f"<br><span style='color:#555;font-size:90%'>{plane}{' · '.join(cells)}</span>"


def _mean(values) -> float:
    vals = [v for v in values if v == v]  # drop NaN (a field this strategy does not report)
    return sum(vals) / len(vals) if vals else 0.0


def _ema(y, w):
    acc, out = 0.0, []
    for v in y:
        acc = w * acc + (1 - w) * v
        out.append(acc)
    return out
