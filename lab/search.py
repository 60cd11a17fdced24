"""Hyperparameter search on the cluster: trials on engine groups at once, grid or random, with early stopping.

A trial is a lab run (`RunConfig` with the trial's knob values) on one engine group
(`lab.groups`): with the cluster split into g groups, g trials train at the same time. The
samplers and the pruner are Optuna's (a well-kept library, so the lab does not write its own):
`GridSampler` (every combination), `RandomSampler` (values drawn from lists or ranges) and
`SuccessiveHalvingPruner`, which is asynchronous successive halving (ASHA, Li et al. 2020): at
rungs of min_resource * reduction_factor^k steps, a trial goes on only if its test accuracy is in
the top 1/reduction_factor of the trials that reached that rung; the others are stopped
(`run.stop()`) and marked pruned. `MedianPruner` is there too ("median").

Each eval step's held-out metric (`test_acc` on classification) is reported to Optuna as the
trial's intermediate value at that step; the trial's value is its final one. A trial whose run
fails is marked failed in its row (with the error) and the search goes on; a group whose engine
died is dropped. Bad input (an empty space, an unknown knob, a value the knob refuses, more
groups than engines) is a one-line `ConfigError` before anything starts.

Results are saved like runs: `runs/search-<time>-<id>/search.json` (the space, settings and the
table of trials, each with its run id) next to the trials' own runs; `load(path)` reloads it.

    >>> s = Search.start(cluster, {"lr": [1e-3, 3e-3, 1e-2], "batch_size": [16, 64]},
    ...                  base=RunConfig(steps=200), pruner="asha", groups=2)
    >>> s.wait(); s.best
"""
from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import knobs, records
from .config import ALIASES, RunConfig
from .errors import ConfigError, LabError, check

METHODS = ("grid", "random")
PRUNERS = ("none", "asha", "median")
DONE = ("complete", "pruned", "failed")


@dataclass(frozen=True)
class Span:
    """A range to draw from (random search only): [low, high], on a log scale if `log`."""
    low: float
    high: float
    log: bool = False


def parse_values(text: str):
    """Command-line values: "0.001,0.01,0.1" (a list) or "1e-4:1e-1:log" / "16:128" (a Span)."""
    if ":" in text:
        parts = text.split(":")
        check(len(parts) in (2, 3) and (len(parts) == 2 or parts[2] in ("log", "lin")), "space",
              "knob=LOW:HIGH or knob=LOW:HIGH:log", text)
        try:
            lo, hi = (int(p) if p.strip().lstrip("-").isdigit() else float(p) for p in parts[:2])
        except ValueError:
            raise ConfigError("space", "knob=LOW:HIGH with numbers", text) from None
        return Span(lo, hi, len(parts) == 3 and parts[2] == "log")
    return [v for v in (s.strip() for s in text.split(",")) if v]


def _entry(name: str):
    """The declaration of knob `name` (short name or dotted path), or the one-line ConfigError."""
    path = ALIASES.get(name, name)
    for e in knobs.walk(RunConfig):
        if e.path == path:
            return e
    raise ConfigError("knob", "one of " + ", ".join(sorted(ALIASES)) + " or a dotted config path", name)


def check_space(space: Dict[str, Any], method: str = "grid") -> Dict[str, Any]:
    """The space checked against the knobs' own declarations: {knob path: list of values or Span}.

    Values given as text (the command line) are parsed by the knob. Raises a one-line ConfigError
    for an empty space, an unknown knob, a refused value, an empty list, or a Span in a grid.
    """
    check(isinstance(space, dict) and len(space) > 0, "space", "at least one knob with values to try", space)
    out: Dict[str, Any] = {}
    for name, values in space.items():
        e = _entry(name)
        if isinstance(values, str):
            values = parse_values(values)
        if isinstance(values, tuple) and len(values) in (2, 3) and all(isinstance(v, (int, float)) for v in values[:2]):
            values = Span(values[0], values[1], bool(values[2]) if len(values) == 3 else False)
        if isinstance(values, Span):
            check(method == "random", e.short, "a list of values in a grid search (ranges LOW:HIGH need "
                  "method random)", f"{values.low}:{values.high}")
            check(e.base in (int, float) and not e.is_list and e.knob.choices is None, e.short,
                  "a list of values (a range needs a numeric knob)", f"{values.low}:{values.high}")
            check(values.low < values.high and (not values.log or values.low > 0), e.short,
                  "a range LOW < HIGH (LOW > 0 on a log scale)", f"{values.low}:{values.high}")
            if e.base is int:
                values = Span(int(values.low), int(values.high), values.log)
            e.check(values.low), e.check(values.high)   # both ends inside what the knob accepts
        else:
            if not isinstance(values, (list, tuple)):
                values = [values]
            check(len(values) > 0, e.short, "at least one value to try", list(values))
            values = [e.parse(v) if isinstance(v, str) and e.base is not str else v for v in values]
            values = [float(v) if e.base is float and isinstance(v, int) and not isinstance(v, bool) else v
                      for v in values]
            for v in values:
                e.check(v)
            values = list(dict.fromkeys(values))
        out[e.path] = values
    return out


def grid_size(space: Dict[str, Any]) -> int:
    return math.prod(len(v) for v in space.values())


@dataclass
class Trial:
    """One row of the search's table."""
    number: int
    params: Dict[str, Any]
    state: str = "running"                  # running, complete, pruned, failed
    value: Optional[float] = None           # the final metric (complete), or the last one seen
    steps: int = 0                          # steps it trained
    curve: List[Tuple[int, float]] = field(default_factory=list)   # (step, metric) at eval steps
    run_id: str = ""
    group: Optional[int] = None
    error: str = ""
    started: float = 0.0
    ended: float = 0.0

    def row(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class SearchData:
    """A search's settings and table of trials, live or reloaded (`load`)."""

    def __init__(self, info: dict, trials: List[Trial], path: Optional[Path]):
        self.info, self.trials, self.path = info, trials, path

    @property
    def metric(self) -> str:
        return self.info["metric"]

    @property
    def best(self) -> Optional[Trial]:
        """The complete trial with the highest metric (None before one completed)."""
        done = [t for t in self.trials if t.state == "complete" and t.value is not None]
        sign = -1 if self.info.get("direction") == "minimize" else 1
        return max(done, key=lambda t: sign * t.value) if done else None

    @property
    def total_steps(self) -> int:
        """Steps trained over every trial (what early stopping saves)."""
        return sum(t.steps for t in self.trials)

    def table(self) -> List[dict]:
        return [t.row() for t in self.trials]

    def counts(self) -> Dict[str, int]:
        out = {s: 0 for s in ("running",) + DONE}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out

    def to_dict(self) -> dict:
        best = self.best
        return {**self.info, "trials": self.table(), "total_steps": self.total_steps,
                "best": None if best is None else {"number": best.number, "params": best.params, "value": best.value,
                                                   "run_id": best.run_id}}

    def __repr__(self):
        b = self.best
        c = self.counts()
        return (f"<Search {self.info.get('id', '')}: {self.info['method']}, pruner {self.info['pruner']}, "
                f"{len(self.trials)} trials ({c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed), "
                + (f"best {self.metric} {b.value:.4f} with {b.params}>" if b else "no result yet>"))


def load(path) -> SearchData:
    """Reload a saved search (`runs/search-<id>/` or its search.json)."""
    path = Path(path)
    f = path / "search.json" if path.is_dir() else path
    if not f.exists():
        raise ConfigError("search path", "a saved search directory (holding search.json)", str(path))
    d = json.loads(f.read_text())
    trials = [Trial(**{k: v for k, v in t.items() if k in Trial.__dataclass_fields__}) for t in d.pop("trials")]
    for t in trials:
        t.curve = [tuple(p) for p in t.curve]
    d.pop("best", None), d.pop("total_steps", None)
    return SearchData(d, trials, f.parent)


METRIC = {"classification": "test_acc", "control": "return", "language": "perplexity"}   # by task kind


def _metric(base: RunConfig) -> Tuple[str, str]:
    """The held-out metric trials are judged by, and whether higher is better ("maximize")."""
    from .tasks import TASKS
    name = METRIC.get(getattr(TASKS.get(base.data.name), "kind", "classification"), "test_acc")
    return name, "maximize" if records.FIELDS[name].better == "higher" else "minimize"


class Search(SearchData):
    """A search running on a cluster's engine groups (`Search.start`); `wait()` or `watch()` drives it."""

    def __init__(self, info, path, groups, study, dists, n_trials, on_update):
        super().__init__(info, [], path)
        self.groups, self.study, self.dists, self.n_trials = list(groups), study, dists, n_trials
        self._free = list(groups)
        self._active: Dict[int, Tuple[Any, Any, Any]] = {}   # trial number -> (optuna trial, run, group)
        self._subscribers: List[Callable[["Search"], None]] = [on_update] if on_update else []
        self.runs: Dict[int, Any] = {}   # trial number -> Run (live, for views)
        self._task: Optional[asyncio.Task] = None
        self._t0 = time.time()

    @classmethod
    def start(cls, cluster, space: Dict[str, Any], *, base: Optional[RunConfig] = None, method: str = "grid",
              trials: Optional[int] = None, pruner: str = "none", groups: Union[int, Sequence[int], None] = None,
              min_steps: Optional[int] = None, reduction_factor: int = 3, seed: int = 0,
              runs_dir: Optional[str] = None, on_update: Optional[Callable[["Search"], None]] = None) -> "Search":
        """Check everything, split the cluster into `groups` and start the first trials.

        Args:
            space: {knob: list of values} (grid or random) or {knob: Span / (low, high[, log])} (random).
            base: the config every trial starts from (its steps are each trial's budget).
            method: "grid" (every combination once) or "random" (`trials` draws).
            pruner: "none", "asha" (Optuna's SuccessiveHalvingPruner) or "median".
            groups: engine groups (trials at once): a number or sizes; default one per worker. A cluster
                already split is used as it is.
            min_steps: ASHA's first rung (default: base.eval_every); later rungs x reduction_factor.
        """
        import optuna
        base = RunConfig() if base is None else base
        check(method in METHODS, "method", "one of " + ", ".join(METHODS), method)
        check(pruner in PRUNERS, "pruner", "one of " + ", ".join(PRUNERS), pruner)
        space = check_space(space, method)
        check(isinstance(reduction_factor, int) and reduction_factor >= 2, "reduction_factor", "an integer >= 2",
              reduction_factor)
        check(min_steps is None or (isinstance(min_steps, int) and 1 <= min_steps <= base.steps), "min_steps",
              f"an integer in [1, steps={base.steps}]", min_steps)
        if method == "grid":
            n = grid_size(space)
            check(trials is None or (isinstance(trials, int) and 1 <= trials), "trials", "an integer >= 1", trials)
            n = n if trials is None else min(n, trials)
        else:
            check(isinstance(trials, int) and not isinstance(trials, bool) and trials >= 1, "trials",
                  "an integer >= 1 (random search draws this many)", trials)
            n = trials
        from .groups import of, sizes_of
        existing = of(cluster)
        if existing is None:
            sizes = sizes_of(cluster.workers if groups is None else groups, cluster.workers)
        else:
            check(groups is None or len(sizes_of(groups, cluster.workers)) == len(existing), "groups",
                  f"None or {len(existing)} (the cluster is already split that way)", groups)
            sizes = [g.workers for g in existing]
        # every grid point / list value must make a valid run on its group (checked before anything starts)
        for combo in itertools.islice(itertools.product(*[v if isinstance(v, list) else [v.low, v.high]
                                                          for v in space.values()]), 4096):
            base.replace(**dict(zip(space, combo))).validate(workers=min(sizes))
        if runs_dir is not None:
            base = base.replace(runs_dir=runs_dir)
        groups_ = existing or cluster.split(sizes)
        metric, direction = _metric(base)
        dists, grid = {}, {}
        for k, v in space.items():
            if isinstance(v, Span):
                dists[k] = (optuna.distributions.IntDistribution(v.low, v.high, log=v.log) if isinstance(v.low, int)
                            else optuna.distributions.FloatDistribution(v.low, v.high, log=v.log))
            else:
                dists[k] = optuna.distributions.CategoricalDistribution(list(range(len(v))))  # indices: any type
                grid[k] = list(range(len(v)))
        sampler = _Grid(grid, seed=seed) if method == "grid" else \
            optuna.samplers.RandomSampler(seed=seed)
        first = min_steps or base.eval_every
        prune = {"none": optuna.pruners.NopPruner(),
                 "asha": optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=reduction_factor),
                 "median": optuna.pruners.MedianPruner(n_startup_trials=len(groups_), n_warmup_steps=first)}[pruner]
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction=direction, sampler=sampler, pruner=prune)
        sid = f"search-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        path = Path(base.runs_dir) / sid
        path.mkdir(parents=True, exist_ok=True)
        info = {"id": sid, "method": method, "pruner": pruner, "metric": metric, "direction": direction, "n_trials": n, "seed": seed,
                "space": {k: (v if isinstance(v, list) else {"low": v.low, "high": v.high, "log": v.log})
                          for k, v in space.items()},
                "min_steps": first, "reduction_factor": reduction_factor, "groups": sizes,
                "base": base.to_dict(), "status": "running", "started": time.time()}
        self = cls(info, path, groups_, study, dists, n, on_update)
        self.space = space
        self._save()
        self._launch()
        return self

    # -- driving ----------------------------------------------------------------------------
    def _params(self, ot) -> Dict[str, Any]:
        out = {}
        for k, v in self.space.items():
            x = ot.params[k]
            out[k] = v[x] if isinstance(v, list) else x
        return out

    def _launch(self) -> None:
        """Start trials on free groups while trials remain."""
        while self._free and len(self.trials) < self.n_trials:
            group = self._free.pop(0)
            ot = self.study.ask(self.dists)
            params = self._params(ot)
            t = Trial(number=ot.number, params=params, group=group.index, started=time.time() - self._t0)
            self.trials.append(t)
            try:
                cfg = RunConfig.from_dict(self.info["base"]).replace(**params)
                cfg.name = cfg.name or ", ".join(f"{_short(k)}={v}" for k, v in params.items())
                run = group.train(cfg)
            except LabError as e:   # e.g. a worker of the group is gone: the trial fails, the search goes on
                self._finish(t, ot, "failed", error=str(e))
                if not group.alive():
                    continue   # the group is dropped
                self._free.append(group)
                continue
            t.run_id = run.id
            self.runs[t.number] = run
            self._active[t.number] = (ot, run, group)
            self._hold(run, self._rung_after(0))
        self._save()

    def poll(self) -> None:
        """Poll every trial's run, report its metric to the pruner, stop pruned trials, start new ones."""
        changed = False
        for number, (ot, run, group) in list(self._active.items()):
            t = next(x for x in self.trials if x.number == number)
            try:
                new = run.poll()
            except Exception as e:   # polling itself broke: the trial fails, never the search
                run._fail(f"polling failed: {type(e).__name__}: {e}")
                new = []
            for r in new:
                t.steps = max(t.steps, r["step"] + 1)
                if r.get(self.metric) is not None:
                    v = float(r[self.metric])
                    t.curve.append((r["step"] + 1, v))
                    t.value = v
                    changed = True
                    if t.state == "running":
                        ot.report(v, r["step"] + 1)
                        if r["step"] + 1 < run.cfg.steps and ot.should_prune():
                            t.state = "pruning"
                            try:
                                run.stop()
                            except Exception:
                                pass
                        elif r["step"] + 1 == self._rung_after(r["step"]):   # promoted: on to the next rung
                            self._hold(run, self._rung_after(r["step"] + 1))
                            try:
                                _at_step(run, {"_pause": False}, r["step"] + 1)
                            except LabError:
                                pass   # as in _hold
            if new:
                changed = True
            if run.done:
                del self._active[number]
                if run.meta["status"] == "failed":
                    self._finish(t, ot, "failed", error=run.meta.get("error", "failed"))
                elif t.state == "pruning":
                    self._finish(t, ot, "pruned")
                else:
                    self._finish(t, ot, "complete")
                if group.alive():
                    self._free.append(group)
                changed = True
        if len(self.trials) < self.n_trials and self._free:
            self._launch()
            changed = True
        if not self._active and (len(self.trials) >= self.n_trials or not self._free):
            for _ in range(self.n_trials - len(self.trials)):   # no group left alive: say so in the rows
                ot = self.study.ask(self.dists)
                t = Trial(number=ot.number, params=self._params(ot))
                self.trials.append(t)
                self._finish(t, ot, "failed", error="no engine group left alive (every group lost a worker)")
            self.info["status"] = "finished"
            self.info["finished"] = time.time()
            changed = True
        if changed:
            self._save()
            for cb in list(self._subscribers):
                try:
                    cb(self)
                except Exception as e:   # a broken view never stops the search; its error is kept
                    self.info["callback_error"] = f"{type(e).__name__}: {e}"

    def _finish(self, t: Trial, ot, state: str, error: str = "") -> None:
        import optuna
        t.state, t.error, t.ended = state, error, time.time() - self._t0
        if state == "complete" and t.value is not None:
            self.study.tell(ot, t.value)
        elif state == "pruned":
            self.study.tell(ot, state=optuna.trial.TrialState.PRUNED)
        else:
            if state == "complete":   # finished without any metric
                t.state, t.error = "failed", "the run recorded no " + self.metric
            self.study.tell(ot, state=optuna.trial.TrialState.FAIL)

    # -- ASHA's rungs: a trial waits at each one until the pruner decided ---------------------
    def _rung_after(self, step: int) -> Optional[int]:
        """The first ASHA rung (in steps trained) after `step`, or None (no pruner, or past the last)."""
        if self.info["pruner"] != "asha":
            return None
        r = self.info["min_steps"]
        while r <= step:
            r *= self.info["reduction_factor"]
        return r if r < self.runs_steps else None

    def _hold(self, run, rung: Optional[int]) -> None:
        """Have the run's workers pause once they trained `rung` steps (before step `rung`): the pruner
        decides on the rung's metric while nothing trains on (no step is spent past a rung)."""
        if rung is not None and not run.done:
            try:
                _at_step(run, {"_pause": True}, rung)
            except LabError:   # a worker died meanwhile: the run's next poll says so in its row
                pass

    @property
    def runs_steps(self) -> int:
        return int(self.info["base"]["steps"])

    @property
    def done(self) -> bool:
        return self.info["status"] in ("finished", "interrupted")

    def subscribe(self, callback: Callable[["Search"], None]) -> None:
        """Call `callback(search)` after every poll that changed something (a view's update)."""
        self._subscribers.append(callback)

    def wait(self, timeout: Optional[float] = None, interval: float = 0.2) -> "Search":
        """Drive the search until every trial ended (blocking: scripts, tests, the CLI)."""
        deadline = None if timeout is None else time.time() + timeout
        try:
            while not self.done:
                self.poll()
                if deadline and time.time() > deadline:
                    raise TimeoutError(f"search {self.info['id']} still going after {timeout} s")
                if not self.done:
                    time.sleep(interval)
        except KeyboardInterrupt:
            self.interrupt()
            raise
        return self

    def watch(self, interval: float = 0.3) -> asyncio.Task:
        """Drive the search in the notebook's event loop (cells and views stay live)."""
        async def loop():
            while not self.done:
                try:
                    self.poll()
                except Exception as e:   # never die silently
                    self.info["error"] = f"{type(e).__name__}: {e}"
                    self.interrupt()
                await asyncio.sleep(interval)
        if self._task is None or self._task.done():
            self._task = asyncio.get_event_loop().create_task(loop())
        return self._task

    def interrupt(self) -> None:
        """Stop every running trial and end the search (saved as interrupted)."""
        for _, run, _ in self._active.values():
            run.interrupt("search interrupted")
        for t in self.trials:
            if t.state in ("running", "pruning"):
                t.state, t.error = "failed", "search interrupted"
        self._active.clear()
        self.info["status"] = "interrupted"
        self._save()

    def _save(self) -> None:
        tmp = self.path / "search.json.tmp"
        tmp.write_text(json.dumps(self.to_dict(), indent=1, default=records.jsonable))
        os.replace(tmp, self.path / "search.json")


def _at_step(run, changes: dict, step: int) -> Optional[int]:
    """`run`'s live-change protocol (lab.control) with the change due at `step`, or at the first step
    boundary every worker can still reach if that is later; returns that step (None: the run ended)."""
    if run.done:
        return None
    run._cmd += 1
    c = run.cluster
    proposals = c._call_all("propose", [(run.id, run._cmd, changes)] * c.workers)
    if any(p is None for p in proposals):
        return None
    effective = max(max(proposals), step)
    c._call_all("finalize", [(run.id, run._cmd, effective)] * c.workers)
    return effective


def _grid_class():
    import optuna

    class Grid(optuna.samplers.GridSampler):
        """Optuna's grid sampler, minus its `study.stop()` once the grid is used up: that only ends an
        `optimize` loop (and raises outside one); the search asks exactly the grid's size itself."""

        def after_trial(self, study, trial, state, values) -> None:
            pass
    return Grid


def _Grid(*args, **kw):
    return _grid_class()(*args, **kw)


ALIASES_BACK = {}   # dotted path -> short name, for trial labels


def _short(path: str) -> str:
    if not ALIASES_BACK:
        ALIASES_BACK.update({v: k for k, v in ALIASES.items()})
    return ALIASES_BACK.get(path, path)


def search(cluster, space, **kw) -> Search:
    """Run a search to its end (`Search.start(...).wait()`)."""
    timeout = kw.pop("timeout", None)
    return Search.start(cluster, space, **kw).wait(timeout=timeout)


# -- the command line: python -m lab search ---------------------------------------------------
def add_args(p, add_run_args) -> None:
    """`python -m lab search`'s flags: the space, the method, the pruner, plus every knob (the base
    config, `add_run_args`: lab.cli's, passed in since lab.cli imports this module)."""
    p.add_argument("--space", action="append", default=[], metavar="KNOB=VALUES",
                   help="a knob and its values: lr=0.001,0.01 (a list) or, with --method random, "
                        "lr=1e-4:1e-1:log or batch_size=16:128 (a range); repeat for more knobs")
    p.add_argument("--method", default="grid", help="grid (every combination) or random (--trials draws)")
    p.add_argument("--trials", type=int, default=None, help="random: how many trials; grid: at most this many")
    p.add_argument("--pruner", default="none", help="none, asha (successive halving, Optuna's) or median")
    p.add_argument("--groups", type=int, default=None, help="engine groups, i.e. trials at once (default: one per worker)")
    p.add_argument("--min-steps", type=int, default=None, help="ASHA's first rung in steps (default: --eval-every)")
    p.add_argument("--reduction-factor", type=int, default=3, help="ASHA keeps the top 1/this at each rung")
    p.add_argument("--search-seed", type=int, default=0, help="the sampler's seed")
    add_run_args(p)


def cmd(a, base: RunConfig, workers: int) -> int:
    """Run a search (from base, on `workers` fresh local engines); print the table or JSON."""
    from .cluster import Cluster
    space = {}
    for item in a.space:
        k, eq, v = item.partition("=")
        check(bool(eq) and k.strip() and v.strip(), "space", "KNOB=VALUES, e.g. lr=0.001,0.01", item)
        space[k.strip()] = v
    kw = dict(base=base, method=a.method, trials=a.trials, pruner=a.pruner, groups=a.groups, min_steps=a.min_steps,
              reduction_factor=a.reduction_factor, seed=a.search_seed)
    check(a.method in METHODS, "method", "one of " + ", ".join(METHODS), a.method)   # the one-line errors
    check(a.pruner in PRUNERS, "pruner", "one of " + ", ".join(PRUNERS), a.pruner)    # before a cluster starts
    check_space(space, a.method)
    from .groups import sizes_of
    sizes_of(workers if a.groups is None else a.groups, workers)
    with Cluster.start(workers=workers, cluster_id=f"cli-{int(time.time() * 1000) % 10**9}", reuse=False) as cluster:
        s = Search.start(cluster, space, **kw).wait(timeout=a.timeout)
    if a.json:
        print(json.dumps(s.to_dict(), indent=1, default=str))
    else:
        print(format_table(s))
        print(f"saved under {s.path}/")
    return 0


def format_table(s: SearchData) -> str:
    keys = list(s.info["space"])
    head = ["#"] + [_short(k) for k in keys] + ["state", "steps", s.metric, "group", "run"]
    rows = [[str(t.number)] + [f"{t.params[k]:.4g}" if isinstance(t.params[k], float) else str(t.params[k])
                               for k in keys]
            + [t.state + (f" ({t.error[:40]})" if t.error else ""), str(t.steps),
               "" if t.value is None else f"{t.value:.4f}", str(t.group), t.run_id] for t in s.trials]
    width = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, width)) for r in [head] + rows]
    b = s.best
    lines.append(f"{len(s.trials)} trials, {s.total_steps} steps in all; best: "
                 + (f"#{b.number} {b.params} -> {s.metric} {b.value:.4f}" if b else "none"))
    return "\n".join(lines)
