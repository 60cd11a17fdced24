"""`python -m lab bench stragglers`: what one slow worker costs each strategy, on the wall clock (chapter 06).

Four workers, the last one slowed down 3x (`RunConfig.slowdown`), the same CNN on digits under
`sync`, `ssp` (s = 2), `async` (and `local`, H = 8, in a full run), one after the other on the
same cluster. Each run stops as soon as rank 0's test accuracy reaches 95% (evaluated every
`EVAL_EVERY` steps), so every worker keeps working until then: the fast ones are not left idle
at the end as they are when every worker must do the same number of steps.

Two figures a user feels, per strategy, mean over `SEEDS` (data split, shards, initialisation)
with min and max; the seeds are the interleaved rounds (seed 0: every strategy, then seed 1...):
- **wall s to 95%**: seconds from the start of the run to rank 0's first evaluation at >= 95%;
- **samples per wall second**: samples every worker processed during the first W seconds, over
  W, where W is the shortest time-to-95% of that seed's runs (all of them were still training
  then: a fixed wall budget for every strategy).

Targets: `async` reaches 95% >= 1.5x sooner than `sync` (median of the per-seed ratios) and
`ssp` between the two; both timing targets, judged in full runs only. Every run reaching 95%
within its step budget is an accuracy floor and always counts. A quick run measures one seed
and no `local` (its timing figures are printed, not judged).
"""
from __future__ import annotations

import statistics

from . import benchmark
from .targets import Target, seeds as over_seeds, spread

STRAGGLER = 3.0
TARGET = 0.95
EVAL_EVERY = 5
SEEDS = (0, 1, 2)


def samples_within(run, seconds: float) -> int:
    """Samples every worker finished within the first `seconds` of the run."""
    return sum(r["n"] for r in run.records if r["t"] <= seconds)


def one_run(cluster, cfg) -> dict:
    """Train until 95% test accuracy (or the step budget); the figures of that run."""
    from .compression import run_until
    run = run_until(cluster, cfg, target=TARGET)
    stale = [r["staleness"] for r in run.records if r["staleness"] is not None]
    return {"run": run, "s to 95%": run.time_to("test_acc", TARGET), "final test acc": run.final("test_acc"),
            "steps (slowest worker)": run.step, "mean staleness": statistics.fmean(stale) if stale else 0.0,
            "wait s (fast worker)": run.summary()["per_worker"][0]["wait_s"]}


@benchmark("stragglers")
def stragglers(quick: bool = False) -> dict:
    import os
    import tempfile
    from lab.cluster import Cluster
    from lab.config import RunConfig
    workers = 4
    base = RunConfig(steps=1500, eval_every=EVAL_EVERY, checkpoint_every=10_000,
                     slowdown=[1.0] * (workers - 1) + [STRAGGLER], runs_dir=tempfile.mkdtemp(prefix="lab-bench-strag-"))
    configs = [("sync", {"strategy": "sync"}), ("ssp s=2", {"strategy": "ssp", "staleness": 2}),
               ("async", {"strategy": "async"})]
    if not quick:
        configs.append(("local H=8", {"strategy": "local", "period": 8}))
    seeds = SEEDS[:1] if quick else SEEDS  # quick: one seed, its timing targets reported, not judged
    got = {label: [] for label, _ in configs}
    with Cluster.start(workers=workers, cluster_id=f"bench-stragglers-{os.getpid()}", reuse=False) as cluster:
        for seed in seeds:  # interleaved: every strategy under one seed, then the next seed
            runs = {label: one_run(cluster, base.replace(**knobs, **{"data.seed": seed}, name=label))
                    for label, knobs in configs}
            budget = min((m["s to 95%"] for m in runs.values() if m["s to 95%"]), default=None)
            for label, m in runs.items():
                run = m.pop("run")
                m["samples/s (wall)"] = samples_within(run, budget) / budget if budget else None
                m["wall budget s"] = budget
                got[label].append(m)
    rows, per_seed = [], {}
    for label, ms in got.items():
        times = [m["s to 95%"] for m in ms]
        reached = [t for t in times if t is not None]
        tput = [m["samples/s (wall)"] for m in ms if m["samples/s (wall)"]]
        rows.append({"strategy": label, "reached 95%": f"{len(reached)}/{len(ms)}",
                     "wall s to 95%": over_seeds(reached) if reached else None,
                     "samples/s (wall)": over_seeds(tput) if tput else None,
                     "steps (slowest worker)": over_seeds([m["steps (slowest worker)"] for m in ms]),
                     "mean staleness": over_seeds([m["mean staleness"] for m in ms]),
                     "wait s (fast worker)": over_seeds([m["wait s (fast worker)"] for m in ms])})
        per_seed[label] = times
    speedup = {label: spread([s / t for s, t in zip(per_seed["sync"], ts) if s and t] or [float("nan")])
               for label, ts in per_seed.items() if label != "sync"}
    wall = {label: spread([m["samples/s (wall)"] / s["samples/s (wall)"] for m, s in zip(ms, got["sync"])
                           if m["samples/s (wall)"] and s["samples/s (wall)"]] or [float("nan")])
            for label, ms in got.items() if label != "sync"}
    ratios = {f"{label} / sync wall-clock speed to 95% (sync s / {label} s)": sp["median"]
              for label, sp in speedup.items()}
    ratios |= {f"{label} / sync samples per wall second": sp["median"] for label, sp in wall.items()}
    n_runs = sum(len(ms) for ms in got.values())
    n_reached = sum(m["s to 95%"] is not None for ms in got.values() for m in ms)
    targets = [
        Target("runs that reached 95% test accuracy", n_reached, ">=", n_runs),
        Target("async / sync wall-clock speed to 95%", speedup["async"]["median"], ">=", 1.5, noisy=True,
               spread=speedup["async"]),
        Target("ssp s=2 / sync wall-clock speed to 95% (between sync and async)", speedup["ssp s=2"]["median"],
               "between", (1.0, speedup["async"]["median"]), noisy=True, spread=speedup["ssp s=2"]),
    ]
    return {"table": rows, "ratios": ratios, "targets": targets,
            "rounds": {label: ms for label, ms in got.items()},
            "note": f"{workers} workers, the last slowed {STRAGGLER:g}x; each run stops when rank 0's test accuracy "
                    f"(every {EVAL_EVERY} steps) reaches {TARGET:.0%} (at most {base.steps} steps); CNN on digits, "
                    f"batch {base.data.batch_size}, {base.optim.name} lr {base.optim.lr}; "
                    f"seeds {', '.join(map(str, seeds))} "
                    "interleaved: mean (min-max) over seeds. samples/s (wall): every worker's samples in the first W s "
                    "over W, W = the seed's shortest time to 95%."}
