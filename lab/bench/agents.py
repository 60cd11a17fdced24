"""`python -m lab bench agents`: A3C against A2C on CartPole with 1, 2 and 4 workers (chapter 10).

Both train the same actor-critic with the same tuned settings (`lab.agents.distributed`), one
cluster per worker count, A3C then A2C on it. For each run: environment steps per second (all
workers, over their busy time: rank 0's greedy evaluations excluded), updates per second, the
seconds and the environment steps until rank 0's greedy return (5 episodes, every `eval_every`
updates) first reached 195 (the run then stops: `stop_at`), the last return and the mean
staleness. With one worker `async` and `sync` do the same computation (same environment steps
to 195, same returns), so the gap between their throughputs is the machine's noise.
Workers on one machine share its cores: past the core count, more workers add experience per
second only if the cores were idle, so read the throughput column against the machine line.
"""
from __future__ import annotations

import os
import statistics

from . import benchmark

TARGET = 195.0


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
    counts = (1, 2, 4)
    runs_dir = tempfile.mkdtemp(prefix="lab-bench-agents-")
    rows, ratios = [], {}
    for n in counts:
        # one torch thread per worker: a 64-wide MLP gains nothing from intra-op threads, and with
        # 2 threads on 2 busy cores one worker ran 16x slower (543 against 8,574 env steps/s)
        with Cluster.start(workers=n, threads=1, cluster_id=f"bench-agents-{os.getpid()}-{n}", reuse=False) as cluster:
            for label, make in (("A3C", a3c_config), ("A2C", a2c_config)):
                run = stop_at(cluster.train(make(steps, seed=0, eval_every=20, runs_dir=runs_dir)), TARGET)
                run.wait(timeout=1800, interval=0.05)
                rows.append(_row(run, n, label))
    by = {(r["agent"], r["workers"]): r for r in rows}
    for n in counts:
        a3c, a2c = by[("A3C", n)], by[("A2C", n)]
        ratios[f"A3C / A2C env steps/s, {n} workers"] = a3c["env steps/s"] / max(a2c["env steps/s"], 1)
    for label in ("A3C", "A2C"):
        top = max(counts)
        ratios[f"{label} env steps/s, {top} workers / 1"] = by[(label, top)]["env steps/s"] / max(by[(label, 1)]["env steps/s"], 1)
    return {"table": rows, "ratios": ratios,
            "note": (f"CartPole-v1 actor-critic, at most {steps} updates per worker of 16 steps x 8 envs, Adam 5e-4, seed 0, "
                     "stopped at a greedy return of 195; "
                     "time to 195 on rank 0's clock (includes its greedy evaluations); 1 torch thread per worker; "
                     f"{os.cpu_count()} cores shared by all workers.")}
