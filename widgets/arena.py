"""The strategy arena: run several configurations one after another and overlay them (chapter 12).

Runs are queued on one cluster and started in the background as the previous one ends (the
kernel stays idle, so widgets keep answering); saved runs (`runs/<id>`) can be added too. Four
overlays (loss against time and against bytes, the test metric against time, bytes per step)
and a table of time-to-target and final metric update as records arrive. The figures, table and
exports come from `lab.compare`, so `python -m lab compare` writes the same report.

Example:
    >>> arena = Arena(cluster)
    >>> arena.queue(cfg.replace(strategy="sync"), cfg.replace(strategy="async"))
    >>> arena            # display it: curves appear as the runs go
    >>> arena.export("arena")   # arena.csv, arena.json, arena.html (one standalone file)
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import List, Optional

import ipywidgets as W
import plotly.graph_objects as go

from lab import compare
from lab.errors import LabError
from lab.runs import load_run
from .base import Displayable, figure_grid


class Arena(Displayable):
    """Several runs on one cluster, overlaid; exportable to CSV, JSON and one HTML file.

    Args:
        cluster: the cluster queued configs run on (None: only saved runs can be added).
        panel: a StrategyPanel sharing the cluster: its runs join the arena and the queue waits
            for them to end.
        target: the test-metric value for the time-to-target column (default: 90% of the best final).
        smoothing: smoothing weight of the loss curves.
        max_fps: at most this many redraws a second.
    Attributes:
        runs: the runs in the arena, in the order they were added.
    """

    def __init__(self, cluster=None, *, panel=None, target: Optional[float] = None, smoothing: float = 0.6,
                 max_fps: float = 2.0):
        self.cluster = cluster if cluster is not None else getattr(panel, "cluster", None)
        self.panel = panel
        self.runs: List = []
        self._queue: List = []
        self._task = None
        self.max_fps = max_fps
        self._last_draw = 0.0
        self._timer = None
        self._dirty = False
        self.errors: List[str] = []
        self.target = W.FloatText(value=target if target is not None else 0.0, description="target",
                                  layout=W.Layout(width="180px"))
        self._auto_target, self._setting = target is None, False
        self.target.observe(self._on_target, "value")
        self.smoothing = W.FloatSlider(value=smoothing, min=0, max=0.99, step=0.01, description="smoothing",
                                       continuous_update=False)
        self.smoothing.observe(lambda _: self.redraw(), "value")
        self.status = W.HTML()
        self.table_html = W.HTML()
        self.export_button = W.Button(description="export CSV / JSON / HTML", icon="download")
        self.export_button.on_click(lambda _: self._export_clicked())
        self.figs = {k: go.FigureWidget(f) for k, f in compare.figures([]).items()}
        self.widget = W.VBox([self.status, W.HBox([self.target, self.smoothing, self.export_button]),
                              figure_grid(self.figs.values()),
                              self.table_html], layout=W.Layout(width="100%"))
        if panel is not None:
            panel.on_start.append(self.add)
            if panel.run is not None:
                self.add(panel.run)
        self.redraw()

    # -- adding runs ----------------------------------------------------------------------------
    def add(self, run):
        """Add a live run, a saved `RunData`, or the path of a saved run (`runs/<id>`)."""
        if isinstance(run, (str, Path)):
            try:
                run = load_run(run)
            except LabError as e:
                self._say(str(e))
                return None
        if any(r is run for r in self.runs):
            return run
        self.runs.append(run)
        if hasattr(run, "subscribe") and not run.done:
            run.subscribe(lambda r, new: self._changed())
            self._changed()
        else:
            self.redraw()  # a finished run draws once, whole
        return run

    def queue(self, *configs):
        """Run these RunConfigs one after another on the cluster, in the background.

        Each starts when every live run in the arena (and the panel's) has ended. Returns at once;
        `wait()` blocks until all are done (for scripts and CI).
        """
        if self.cluster is None:
            raise LabError("this arena has no cluster: give Arena(cluster) to queue runs")
        for cfg in configs:
            if not cfg.name:
                c = cfg.strategy.compression.name
                cfg = cfg.replace(name=cfg.strategy.name + ("" if c == "none" else f"+{c}"))
            self._queue.append(cfg)
        self._run_queue_in_background()
        self._say()
        return self

    def _busy(self) -> bool:
        live = [r for r in self.runs if hasattr(r, "set") and not r.done]
        prun = getattr(self.panel, "run", None)
        return bool(live) or (prun is not None and hasattr(prun, "set") and not prun.done)

    def _advance(self) -> None:
        """Start the next queued config if nothing is running."""
        if not self._queue or self._busy():
            return
        cfg = self._queue.pop(0)
        if self.panel is not None:
            self.cluster = self.panel.cluster  # the panel may have resized it
        try:
            run = self.cluster.train(cfg)
        except LabError as e:
            self.errors.append(f"{cfg.name}: {e}")
            self._say()
            return
        self.add(run)
        try:
            run.watch()
        except RuntimeError:
            pass
        self._say()

    def _run_queue_in_background(self):
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            return
        if not loop.is_running() or (self._task is not None and not self._task.done()):
            return

        async def sequence():
            while self._queue or self._busy():
                self._advance()
                await asyncio.sleep(0.25)
            self.redraw()
        self._task = loop.create_task(sequence())

    def wait(self, timeout: Optional[float] = None, interval: float = 0.2) -> "Arena":
        """Block until every queued run has run and ended (polling them here). For CI and scripts."""
        deadline = None if timeout is None else time.time() + timeout
        while self._queue or self._busy():
            self._advance()
            for r in self.runs:
                if hasattr(r, "poll") and not r.done:
                    r.poll()
            if self._dirty and time.monotonic() - self._last_draw >= 1.0 / self.max_fps:
                self.redraw()
            if deadline and time.time() > deadline:
                raise TimeoutError(f"arena still running after {timeout} s")
            time.sleep(interval)
        self.redraw()
        return self

    # -- drawing --------------------------------------------------------------------------------
    def _changed(self):
        """Records arrived: redraw now or within 1/max_fps seconds (at most max_fps times a second)."""
        wait = 1.0 / self.max_fps - (time.monotonic() - self._last_draw)
        if wait <= 0:
            self.redraw()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(wait, self.redraw)
            except RuntimeError:  # no event loop (wait() or a script): the next due call draws
                self._dirty = True

    def _on_target(self, _):
        if not self._setting:
            self._auto_target = False
            self.redraw()

    def _target(self):
        if self._auto_target:
            return None
        return self.target.value

    def redraw(self):
        """Redraw the overlays and the table from every run's records."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._last_draw, self._dirty = time.monotonic(), False
        new = compare.figures(self.runs, self.smoothing.value)
        for key, fw in self.figs.items():
            src = new[key]
            if len(fw.data) != len(src.data):
                fw.data = []
                fw.add_traces([_props(t, keep_type=True) for t in src.data])
            with fw.batch_update():
                for tw, ts in zip(fw.data, src.data):
                    tw.update(_props(ts))
                fw.layout.shapes = src.layout.shapes
                fw.layout.annotations = src.layout.annotations
                fw.layout.title.text = src.layout.title.text
                fw.layout.yaxis.title.text = src.layout.yaxis.title.text
        rows = self.table()
        if rows and self._auto_target and rows[0].get("target") is not None:
            self._setting = True  # show the automatic target without making it the user's
            self.target.value = rows[0]["target"]
            self._setting = False
        self.table_html.value = compare.table_html(rows)
        self._say()

    def _say(self, extra: str = ""):
        live = [r for r in self.runs if hasattr(r, "set") and not r.done]
        parts = [f"<b>Arena</b>: {len(self.runs)} runs", f"{len(self._queue)} queued"]
        if live:
            p = live[0].progress()
            parts.append(f"running <b>{live[0].label}</b> step {p['step']}/{p['steps']}")
        parts += [f"<span style='color:#b00'>⚠ {e}</span>" for e in self.errors[-2:]]
        if extra:
            parts.append(f"<span style='color:#b00'>⚠ {extra}</span>")
        self.status.value = " · ".join(parts)

    # -- analysis and export ----------------------------------------------------------------------
    def table(self) -> List[dict]:
        """One row per run: final metric, time to target, bytes per step, throughput (lab.compare.table)."""
        return compare.table(self.runs, self._target())

    def to_csv(self, path) -> Path:
        return compare.to_csv(self.runs, path, self._target())

    def to_json(self, path) -> Path:
        return compare.to_json(self.runs, path, self._target())

    def to_html(self, path) -> Path:
        """One standalone HTML file (plotly.js inlined) with the overlays and the table."""
        return compare.to_html(self.runs, path, self._target())

    def export(self, stem="arena") -> dict:
        """Write `<stem>.csv`, `<stem>.json` and `<stem>.html`; returns their paths."""
        stem = Path(stem)
        return {"csv": self.to_csv(stem.with_suffix(".csv")), "json": self.to_json(stem.with_suffix(".json")),
                "html": self.to_html(stem.with_suffix(".html"))}

    def _export_clicked(self):
        paths = self.export()
        self.status.value += " · wrote " + ", ".join(str(p) for p in paths.values())

    # -- display --------------------------------------------------------------------------------
    def __repr__(self):
        return f"<Arena: {len(self.runs)} runs, {len(self._queue)} queued>"


def _props(trace, keep_type: bool = False) -> dict:
    d = trace.to_plotly_json()
    d.pop("uid", None)
    if not keep_type:
        d.pop("type", None)
    return d
