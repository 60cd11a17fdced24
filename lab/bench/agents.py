"""`python -m lab bench agents`: A3C against A2C on CartPole with 1, 2 and 4 workers (chapter 10).

Both train the same actor-critic with the same tuned settings (`lab.agents.distributed`), one
cluster per worker count, A3C then A2C on it. For each run: environment steps per second (all
workers, over their busy time: rank 0's greedy evaluations excluded), updates per second, the
seconds and the environment steps until rank 0's greedy return (5 episodes, every `eval_every`
updates) first reached 195 (the run then stops: `stop_at`), the last return and the mean
staleness. With one worker `async` and `sync` do the same computation (same environment steps
to 195, same returns), so the gap between their throughputs is the machine's noise. Each variant runs once per seed in
`SEEDS`, A3C and A2C interleaved; the table gives mean (min-max) over the seeds.

Targets: A3C's staleness > 0 with 2+ workers and A2C's 0 (always judged); every run reaches 195
(judged in full runs: the quick budget of 200 updates may leave a slow seed short); the one-worker
A3C / A2C throughput ratio within 0.8-1.25 (the same computation; timing, full runs only). A quick
run measures 2 workers and one seed only: the staleness targets, and the rest reported.
Workers on one machine share its cores: past the core count, more workers add experience per
second only if the cores were idle, so read the throughput column against the machine line.
"""
from __future__ import annotations

import os
import statistics

from . import benchmark
from .targets import Target, seeds, spread

TARGET = 195.0
SEEDS = (0, 1, 2)  # each variant repeated once per seed, A3C and A2C interleaved


def _row(run, workers: int, label: str) -> dict:
    from ..agents.distributed import env_steps
    s = run.summary()
    evals = env_steps(run)
    hit = next(((n, t) for n, t, ret in evals if ret >= TARGET), None)
    steps = sum(p["steps"] for p in s["per_worker"].values())
    busy = sum(r["step_s"] for r in run.records)
    stale = [r["staleness"] for r in run.records if r.get("staleness") is not None]
    return {"agent": label, "workers": workers, "updates/worker": s["steps"],
            "env steps/s": round(s["throughput_total"]),
            "updates/s": round(steps / (busy / workers), 1) if busy else 0.0,
            "s to 195": round(hit[1], 1) if hit else "not reached",
            "env steps to 195": hit[0] if hit else "not reached",
            "last return": s.get("return"), "mean staleness": round(statistics.mean(stale), 2) if stale else None}


@benchmark("agents")
def agents(quick: bool = False) -> dict:
    import tempfile
    from ..agents.distributed import a2c_config, a3c_config, stop_at
    from ..cluster import Cluster
    steps = 200 if quick else 300
    counts = (2,) if quick else (1, 2, 4)  # quick: 2 workers, one seed (the staleness targets)
    seeds_run = SEEDS[:1] if quick else SEEDS
    runs_dir = tempfile.mkdtemp(prefix="lab-bench-agents-")
    rounds = {}
    for n in counts:
        # one torch thread per worker: a 64-wide MLP gains nothing from intra-op threads, and with
        # 2 threads on 2 busy cores one worker ran an order of magnitude slower (intra-op threads fighting)
        with Cluster.start(workers=n, threads=1, cluster_id=f"bench-agents-{os.getpid()}-{n}", reuse=False) as cluster:
            for seed in seeds_run:  # interleaved: A3C, A2C, A3C, A2C, ... so load drift hits both alike
                for label, make in (("A3C", a3c_config), ("A2C", a2c_config)):
                    run = stop_at(cluster.train(make(steps, seed=seed, eval_every=20, runs_dir=runs_dir)), TARGET)
                    run.wait(timeout=1800, interval=0.05)
                    rounds.setdefault(f"{label} {n}", []).append(_row(run, n, label) | {"seed": seed})
    rows = [_summary(reps) for reps in rounds.values()]
    ratios = {f"A3C / A2C env steps/s, {n} worker" + "s" * (n > 1):
              spread([a["env steps/s"] / max(b["env steps/s"], 1) for a, b in zip(rounds[f"A3C {n}"], rounds[f"A2C {n}"])])
              for n in counts}
    stale_a3c = min(statistics.mean(r["mean staleness"] or 0 for r in rounds[f"A3C {n}"]) for n in counts if n > 1)
    stale_a2c = max(r["mean staleness"] or 0 for n in counts for r in rounds[f"A2C {n}"])
    reached = sum(isinstance(r["env steps to 195"], int) for reps in rounds.values() for r in reps)
    total = sum(len(reps) for reps in rounds.values())
    targets = [
        Target("A3C mean staleness with 2+ workers (asynchronous updates)", stale_a3c, ">", 0),
        Target("A2C max staleness (synchronous updates)", stale_a2c, "<=", 0),
        Target(f"runs that reached a greedy return of {TARGET:g}", reached, ">=", total,
               noisy=quick, note="quick runs stop at 200 updates: a slow seed may not get there"),
    ]
    one = ratios.get("A3C / A2C env steps/s, 1 worker")
    if one:  # full runs only
        targets.append(Target("A3C / A2C env steps/s with 1 worker (same computation)", one["median"], "between",
                              (0.8, 1.25), noisy=True, spread=one))
    return {"table": rows, "ratios": ratios, "targets": targets, "rounds": rounds,
            "note": (f"CartPole-v1 actor-critic, at most {steps} updates per worker of 16 steps x 8 envs, Adam 5e-4, "
                     f"seeds {', '.join(map(str, seeds_run))} interleaved A3C / A2C: mean (min-max) over seeds; "
                     f"stopped at a greedy return of {TARGET:g}; "
                     "time to 195 on rank 0's clock (includes its greedy evaluations); 1 torch thread per worker; "
                     f"{os.cpu_count()} cores shared by all workers.")}


def _summary(reps: list) -> dict:
    """One table row from a variant's repeats: mean (min-max) of each figure."""
    hit = [r for r in reps if isinstance(r["env steps to 195"], int)]
    stale = [r["mean staleness"] for r in reps if r["mean staleness"] is not None]
    return {"agent": reps[0]["agent"], "workers": reps[0]["workers"], "reached 195": f"{len(hit)}/{len(reps)}",
            "env steps/s": seeds([r["env steps/s"] for r in reps]),
            "updates/s": seeds([r["updates/s"] for r in reps]),
            "s to 195": seeds([r["s to 195"] for r in hit]) if hit else None,
            "env steps to 195": seeds([r["env steps to 195"] for r in hit]) if hit else None,
            "mean staleness": seeds(stale) if stale else None}
