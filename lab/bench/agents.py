"""`python -m lab bench agents`: A3C against A2C on CartPole with 1, 2 and 4 workers (chapter 10).

Both train the same actor-critic with the same tuned settings (`lab.agents.distributed`), one
cluster per worker count, A3C then A2C on it. For each run: environment steps per second (all
workers, over their busy time: rank 0's greedy evaluations excluded), updates per second,
the wall time and the environment steps until rank 0's greedy return (5 episodes, every
`eval_every` updates) first reached 195, the final return and the mean staleness. With one
worker `async` and `sync` do the same thing, which is the check that the two paths agree.
Workers on one machine share its cores: past the core count, more workers add experience per
second only if the cores were idle, so read the throughput column against the machine line.
"""
from __future__ import annotations

import os
import statistics
import time

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
            "final return": s.get("return"), "mean staleness": round(statistics.mean(stale), 2) if stale else None,
            "wall s": round(s["wall_s"], 1)}


@benchmark("agents")
def agents(quick: bool = False) -> dict:
    import tempfile
    from ..agents.distributed import a2c_config, a3c_config
    from ..cluster import Cluster
    steps = 150 if quick else 300
    counts = (1, 2, 4)
    runs_dir = tempfile.mkdtemp(prefix="lab-bench-agents-")
    rows, ratios = [], {}
    for n in counts:
        with Cluster.start(workers=n, cluster_id=f"bench-agents-{os.getpid()}-{n}", reuse=False) as cluster:
            for label, make in (("A3C", a3c_config), ("A2C", a2c_config)):
                t0 = time.time()
                run = cluster.train(make(steps, seed=0, eval_every=20, runs_dir=runs_dir)).wait(timeout=1800)
                row = _row(run, n, label)
                row["wall s"] = round(time.time() - t0, 1)
                rows.append(row)
    by = {(r["agent"], r["workers"]): r for r in rows}
    for n in counts:
        a3c, a2c = by[("A3C", n)], by[("A2C", n)]
        ratios[f"A3C / A2C env steps/s, {n} workers"] = a3c["env steps/s"] / max(a2c["env steps/s"], 1)
    for label in ("A3C", "A2C"):
        top = max(counts)
        ratios[f"{label} env steps/s, {top} workers / 1"] = by[(label, top)]["env steps/s"] / max(by[(label, 1)]["env steps/s"], 1)
    return {"table": rows, "ratios": ratios,
            "note": (f"CartPole-v1 actor-critic, {steps} updates per worker of 16 steps x 8 envs, Adam, seed 0; "
                     "time to 195 on rank 0's clock (includes its greedy evaluations); "
                     f"{os.cpu_count()} cores shared by all workers.")}
