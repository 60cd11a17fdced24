"""The strategy panel: pick a strategy, a compressor and their knobs; start, pause, stop (chapter 12).

Every widget comes from a knob's declaration (`lab.knobs`): its range or choices, its widget hint,
whether it may change live. Only the knobs that matter for the chosen strategy and compressor are
shown: a strategy's own `Options` fields (for `compressed`, its base's too) and a compressor's
(plus the common compression knobs), so a strategy or compressor added to `lab` appears in the
toggles with its knobs and no edit here. A knob moved while a run goes is sent with `run.set(...)`:
every worker switches at the same step, which the dashboard marks. A bad value or combination is
one line in the panel (the `ConfigError` message), never a traceback.

Example:
    >>> panel = StrategyPanel(cluster, RunConfig(steps=300))
    >>> panel            # display it, pick a strategy, press start
    >>> run = panel.start()   # or start from code
"""
from __future__ import annotations

import dataclasses
import html
import math
from typing import Callable, Dict, List, Optional

import ipywidgets as W

from lab import knobs
from lab.compression import COMPRESSORS, Common as CompressionCommon
from lab.config import ALIASES, RunConfig, get_path
from lab.errors import LabError
from lab.strategies import STRATEGIES

from .dashboard import LiveDashboard
from .base import Displayable

# The general knobs the panel always shows (a layout choice); "workers", "slowdown" and "link" are
# the panel's own (the cluster's size, one slider per worker, the simulated link on or off).
COMMON_KNOBS = ("workers", "steps", "lr", "schedule", "batch_size", "slowdown", "link", "bandwidth_mbps", "latency_ms")
PANEL_ONLY = {"workers": False, "slowdown": True, "link": True}  # name -> may change while a run goes


def _style() -> dict:
    return dict(style={"description_width": "110px"}, layout=W.Layout(width="340px"))


def panel_entries() -> Dict[str, knobs.Entry]:
    """The declared knobs the panel makes a widget for: the common ones, every strategy and compression
    knob (not `strategy` / `compressor`, which are the toggles, nor the panel's own), by short name."""
    return {e.short: e for e in knobs.walk(RunConfig)
            if (e.short in COMMON_KNOBS or e.path.startswith("strategy."))
            and e.short not in ("strategy", "compressor", *PANEL_ONLY)}


def _options_of(component) -> List[str]:
    opts = getattr(component, "Options", None)
    return [f.name for f in dataclasses.fields(opts)] if opts is not None and dataclasses.is_dataclass(opts) else []


def strategy_knobs(name: str) -> List[str]:
    """A strategy's own knobs: its `Options` fields (none for a name not registered)."""
    return _options_of(STRATEGIES.get(name)) if name in STRATEGIES else []


def compressor_knobs(name: str) -> List[str]:
    """A compressor's knobs: its `Options` fields, then the common compression ones (error feedback
    unless the compressor always has it; none at all for the identity)."""
    if name not in COMPRESSORS:
        return []
    comp = COMPRESSORS.get(name)
    if getattr(comp, "identity", False):
        return []
    common = [f.name for f in dataclasses.fields(CompressionCommon) if f.name != "name"]
    if getattr(comp, "error_feedback", False):  # always on (efsignsgd): nothing to choose
        common.remove("error_feedback")
    return [*_options_of(comp), *common]


def is_live(name: str) -> bool:
    """May this panel knob change while a run goes (its declaration's `live`)?"""
    if name in PANEL_ONLY:
        return PANEL_ONLY[name]
    path = ALIASES.get(name)
    entry = next((e for e in knobs.walk(RunConfig) if e.path == path), None)
    return bool(entry and entry.knob.live)


def knob_widget(e: knobs.Entry, value) -> W.Widget:
    """One widget for a declared knob, initialised to `value`, following its widget hint."""
    desc, kind = e.knob.label or e.short.replace("_", " "), e.widget
    if kind == "checkbox":
        return W.Checkbox(value=bool(value), description=desc, indent=False, tooltip=e.knob.help)
    if kind == "dropdown":
        return W.Dropdown(options=e.knob.options(), value=value, description=desc, tooltip=e.knob.help, **_style())
    if kind in ("slider", "log") and e.base in (int, float):
        lo, hi, step = e.ui()
        common = dict(description=desc, continuous_update=False, tooltip=e.knob.help, **_style())
        if kind == "log":
            return W.FloatLogSlider(value=value, base=10, min=math.log10(lo), max=math.log10(hi),
                                    step=step or 0.05, readout_format=".3g", **common)
        if e.base is int:
            return W.IntSlider(value=value, min=lo, max=hi, step=step or 1, **common)
        return W.FloatSlider(value=value, min=lo, max=hi, step=step or (hi - lo) / 100, readout_format=".3g", **common)
    return W.Text(value="" if value is None else str(value), description=desc, tooltip=e.knob.help, **_style())


def make_knobs(cfg: RunConfig, workers: int) -> Dict[str, W.Widget]:
    """One widget per knob, initialised from `cfg`: the panel's own, then one per declared knob."""
    bw = cfg.link.bandwidth_mbps
    widgets = {
        "workers": W.IntSlider(value=workers, min=1, max=8, description="workers", continuous_update=False, **_style()),
        "slowdown": W.HBox(layout=W.Layout(flex_flow="row wrap")),
        "link": W.Checkbox(value=bw is not None or cfg.link.latency_ms > 0, indent=False,
                           description="simulated link (charges each message a modelled transfer time)"),
    }
    for name, e in panel_entries().items():
        value = get_path(cfg, e.path)
        if value is None and e.short == "bandwidth_mbps":
            value = 1000.0  # the slider's position while the link is off
        widgets[name] = knob_widget(e, value)
    return widgets


def visible_knobs(strategy: str, compressor: str, base: str = "sync") -> List[str]:
    """The knobs shown for a strategy and compressor: the common ones, the strategy's own (and, when
    one of them is `base`, that base strategy's), then the compressor's."""
    own = strategy_knobs(strategy)
    if "base" in own:
        own = [*own, *(k for k in strategy_knobs(base) if k not in own)]
    return [*COMMON_KNOBS, *own, *compressor_knobs(compressor)]


class StrategyPanel(Displayable):
    """Toggles, sliders, start / pause / stop and a progress bar over a cluster; drives a LiveDashboard.

    Args:
        cluster: a `lab.cluster.Cluster` (replaced by a resized one if the workers slider asks).
        cfg: the base RunConfig (model, data, optimizer...); the panel's knobs override it.
        dashboard: show a LiveDashboard under the panel (True) or not.
        on_start: called with each run the panel starts (the Arena uses it to collect them).
    Attributes:
        run: the current (or last) run; runs: every run started here.
        message: the one-line message shown in the panel (errors, confirmations).
    """

    def __init__(self, cluster, cfg: Optional[RunConfig] = None, *, dashboard: bool = True,
                 on_start: Optional[Callable] = None):
        self.cluster = cluster
        self.base = cfg or RunConfig()
        self.run = None
        self.runs: List = []
        self.on_start = [on_start] if on_start else []
        self._quiet = False
        self.message = ""
        self.strategy = W.ToggleButtons(options=STRATEGIES.names(), value=self.base.strategy.name,
                                        description="strategy", style={"button_width": "70px"})
        self.compressor = W.ToggleButtons(options=COMPRESSORS.names(), value=self.base.strategy.compression.name,
                                          description="compressor", style={"button_width": "70px"})
        self.knobs = make_knobs(self.base, cluster.workers)
        self._build_slowdown(cluster.workers, self.base.slowdown)
        self.start_button = W.Button(description="start", button_style="success", icon="play")
        self.pause_button = W.Button(description="pause", icon="pause", disabled=True)
        self.stop_button = W.Button(description="stop", button_style="danger", icon="stop", disabled=True)
        self.progress = W.IntProgress(value=0, min=0, max=self.base.steps, layout=W.Layout(width="340px"))
        self.progress_label = W.HTML("not started")
        self.msg = W.HTML()
        self.start_button.on_click(lambda _: self.start())
        self.pause_button.on_click(lambda _: self.toggle_pause())
        self.stop_button.on_click(lambda _: self.stop())
        for w in (self.strategy, self.compressor):
            w.observe(self._on_choice, "value")
        for name, w in self.knobs.items():
            if name != "slowdown":
                w.observe(lambda ch, name=name: self._on_knob(name), "value")
        self.dashboard = LiveDashboard() if dashboard else None
        self._knob_box = W.VBox()
        self.links = W.HBox(layout=W.Layout(flex_flow="row wrap"))   # real links: one slider per host
        self._build_links()
        self.widget = W.VBox([self.strategy, self.compressor, self._knob_box, self.links,
                              W.HBox([self.start_button, self.pause_button, self.stop_button]),
                              W.HBox([self.progress, self.progress_label]), self.msg,
                              *([self.dashboard.widget] if self.dashboard else [])])
        self._show_knobs()
        self._check()

    # -- knobs --------------------------------------------------------------------------------
    def _build_slowdown(self, workers: int, factors=()):
        """One vertical slider per worker: its slow-down factor (a straggler is > 1)."""
        sliders = []
        for r in range(workers):
            s = W.FloatSlider(value=float(factors[r]) if r < len(factors) else 1.0, min=1, max=10, step=0.5,
                              description=f"w{r}", orientation="vertical", continuous_update=False,
                              readout_format=".1f", style={"description_width": "initial"},
                              layout=W.Layout(height="150px", width="60px", padding="4px 0"))
            s.observe(lambda ch: self._on_knob("slowdown"), "value")
            sliders.append(s)
        self.knobs["slowdown"].children = [W.HTML("slow-down ×<br>per worker",
                                                  layout=W.Layout(width="110px")), *sliders]

    def _build_links(self):
        """On a cluster whose workers are hosts on real links (`Cluster.start(hosts=N)`): one slider per
        host, its link's rate in Mbit/s (the kernel's token bucket). Moved during a run, the change is a
        run event (`run.set(link_mbps=...)`, marked on the plots); between runs it applies at once."""
        net = getattr(self.cluster, "net", None)
        if net is None:
            self.links.children = []
            return
        sliders = []
        for h, mbps in zip(net, net.rates):
            s = W.FloatLogSlider(value=mbps or 10_000.0, base=10, min=-1, max=4, step=0.05, readout_format=".3g",
                                 description=h.name, orientation="vertical", continuous_update=False,
                                 style={"description_width": "initial"},
                                 layout=W.Layout(height="150px", width="60px", padding="4px 0"))
            s.observe(lambda ch, host=h.name: self._on_link(host, ch["new"]), "value")
            sliders.append(s)
        self.links.children = [W.HTML("real link<br>Mbit/s per host", layout=W.Layout(width="110px")), *sliders]

    def _on_link(self, host: str, mbps: float) -> Optional[int]:
        """A host's link moved: through the run (an event every worker applies at one step) or at once."""
        if self._quiet:
            return None
        if self._live():
            return self.set(link_mbps={host: mbps})
        try:
            self.cluster.set_link(host, mbps)
        except LabError as e:
            self.say(str(e), error=True)
            return None
        self.say(f"the link of {host} is now {mbps:.3g} Mbit/s (real, shaped by the kernel)")
        return None

    @property
    def visible(self) -> List[str]:
        """Names of the knobs shown now."""
        return visible_knobs(self.strategy.value, self.compressor.value, self.knobs["base"].value)

    def _show_knobs(self):
        names = self.visible
        link = self.knobs["link"].value
        for n in ("bandwidth_mbps", "latency_ms"):
            self.knobs[n].disabled = not link
        self._knob_box.children = [self.knobs[n] for n in names if n in self.knobs]

    def value(self, name: str):
        """The knob's value as `run.set` / `cfg.replace` want it."""
        if name == "slowdown":
            return [s.value for s in self.knobs["slowdown"].children[1:]]
        if name == "bandwidth_mbps":
            return self.knobs[name].value if self.knobs["link"].value else None
        if name == "latency_ms":
            return self.knobs[name].value if self.knobs["link"].value else 0.0
        w = self.knobs[name]
        if isinstance(w, W.Text):  # a knob without a richer widget: its declaration parses the text
            return panel_entries()[name].parse(w.value)
        return w.value

    def config(self) -> RunConfig:
        """The RunConfig the panel describes (validated: raises ConfigError if it is not valid)."""
        changes = {"strategy": self.strategy.value, "compressor": self.compressor.value}
        for name in self.knobs:
            if name not in PANEL_ONLY:
                changes[name] = self.value(name)
        cfg = self.base.replace(**changes)
        slow = self.value("slowdown")
        cfg.slowdown = slow if any(f != 1.0 for f in slow) else []
        cfg.name = self.base.name or self._auto_name(cfg)
        return cfg.validate(workers=self.knobs["workers"].value)

    @staticmethod
    def _auto_name(cfg: RunConfig) -> str:
        c = cfg.strategy.compression.name
        return cfg.strategy.name + ("" if c == "none" else f"+{c}")

    def _check(self) -> bool:
        """Validate the panel's config; show the ConfigError's line if it is not valid."""
        try:
            self.config()
        except LabError as e:
            self.say(str(e), error=True)
            return False
        if self.msg.value.startswith("<span style='color:#b00'>"):
            self.say("")
        return True

    def say(self, text: str, error: bool = False):
        """Show one line in the panel."""
        text = html.escape(text)
        self.message = text
        self.msg.value = f"<span style='color:#b00'>⚠ {text}</span>" if error and text else text

    # -- reacting to the user ------------------------------------------------------------------
    def _on_choice(self, change):
        self._show_knobs()
        name = "strategy" if change["owner"] is self.strategy else "compressor"
        self._on_knob(name)

    def _on_knob(self, name: str):
        if self._quiet:
            return
        self._show_knobs()  # a choice (link on or off, a base strategy) may change which knobs apply
        if name == "workers" and not self._live():
            self._build_slowdown(self.knobs["workers"].value, self.value("slowdown"))
        if not self._live():
            self._check()
            return
        if not is_live(name):
            self.say(f"{name} cannot change while a run goes: it applies to the next start", error=True)
            return
        if name == "link":
            changes = {"bandwidth_mbps": self.value("bandwidth_mbps"), "latency_ms": self.value("latency_ms")}
        else:
            changes = {name: self.value(name)}
        self.set(**changes)

    def set(self, **changes) -> Optional[int]:
        """Change knobs of the running run (every worker at one step); returns that step."""
        if not self._live():
            self.say("no run is going: the change applies to the next start")
            return None
        try:
            step = self.run.set(**changes)
        except LabError as e:
            self.say(str(e), error=True)
            return None
        if step is None:
            self.say("the run had already ended")
        else:
            self.say(f"{', '.join(f'{k}={v}' for k, v in changes.items())} from step {step} on every worker")
        return step

    def _live(self) -> bool:
        return self.run is not None and hasattr(self.run, "set") and not self.run.done

    # -- start / pause / stop -------------------------------------------------------------------
    def start(self):
        """Start a run with the panel's settings (returns it, or None with a message if invalid)."""
        if self._live():
            self.say(f"run {self.run.id} is still going: stop it first", error=True)
            return None
        try:
            cfg = self.config()
            workers = self.knobs["workers"].value
            if workers != self.cluster.workers:
                self.say(f"starting a cluster of {workers} workers…")
                from lab.cluster import Cluster
                net = getattr(self.cluster, "net", None)
                hosts = min(len(net), workers) if net is not None else 0
                self.cluster = Cluster.start(workers, cluster_id=self.cluster.cluster_id,
                                             timeout_s=self.cluster.timeout_s, hosts=hosts,
                                             link_mbps=net.rates[:hosts] if hosts else None)
                self._build_links()
            run = self.cluster.train(cfg)
        except LabError as e:
            self.say(str(e), error=True)
            return None
        self.run = run
        self.runs.append(run)
        self.progress.max = cfg.steps
        run.subscribe(lambda r, new: self._update_progress())
        if self.dashboard is not None:
            self.dashboard.attach(run)
        try:  # the end of a run brings no record: refresh the buttons when watching ends
            run.watch().add_done_callback(lambda _: self._update_progress())
        except RuntimeError:  # no event loop (a plain script): the caller polls
            pass
        for cb in self.on_start:
            cb(run)
        self.say(f"started run {run.id}")
        self._update_progress()
        return run

    def toggle_pause(self):
        if not self._live():
            return None
        paused = self.run.status == "paused"
        step = self.run.resume() if paused else self.run.pause()
        self.say(("resumed" if paused else "paused") + (f" at step {step}" if step is not None else ""))
        self._update_progress()
        return step

    def stop(self):
        """Stop the run (every worker at one step); it stays saved."""
        if not self._live():
            return None
        step = self.run.stop()
        self.say(f"stopping at step {step}" if step is not None else "the run had already ended")
        return step

    def _update_progress(self):
        run = self.run
        if run is None:
            return
        p = run.progress()
        self.progress.max = max(1, p["steps"])
        self.progress.value = min(p["step"], p["steps"])
        eta = "—" if p["eta"] is None or run.done else f"{p['eta']:.0f} s"
        self.progress_label.value = (f"step {p['step']}/{p['steps']} · {p['elapsed']:.0f} s elapsed · "
                                     f"ETA {eta} · {p['status']} · <code>{run.id}</code>")
        live = self._live()
        self.start_button.disabled = live
        self.pause_button.disabled = self.stop_button.disabled = not live
        self.pause_button.description = "resume" if p["status"] == "paused" else "pause"
        self.knobs["workers"].disabled = live
        if run.done and run.meta.get("error"):
            self.say(run.meta["error"], error=True)

    # -- display --------------------------------------------------------------------------------
    def __repr__(self):
        return f"<StrategyPanel: {self.strategy.value}/{self.compressor.value}, run={getattr(self.run, 'id', None)}>"
