"""`python -m lab bench ps-load`: the parameter server's link against a ring all-reduce (chapter 05).

For 1 to 4 workers, a few steps of `ps` and of `sync` on the same cluster, bytes taken from the
records' ledger (what each collective or message really carried, by its algorithm). With a model
of B bytes, the server receives (n-1) gradients and sends (n-1) parameter copies per step,
2 (n-1) B in all, growing with n; each worker of a ring all-reduce sends and receives
2 (n-1)/n B, which stays under 4 B however many workers there are.
"""
from __future__ import annotations

from statistics import mean

from . import benchmark


def per_step(run, rank: int) -> float:
    """Mean bytes (sent + received) per step of one rank."""
    rows = [r for r in run.records if r["rank"] == rank]
    return mean(r["bytes_sent"] + r["bytes_recv"] for r in rows)


@benchmark("ps-load")
def ps_load(quick: bool = False) -> dict:
    from lab.cluster import Cluster
    from lab.config import RunConfig
    base = RunConfig(steps=5 if quick else 20, runs_dir="runs/bench-ps-load")
    rows = []
    for n in range(1, 5):
        with Cluster.start(workers=n, cluster_id=f"bench-ps-load-{n}", reuse=False) as cluster:
            ps = cluster.train(base.replace(strategy="ps")).wait(timeout=600)
            sync = cluster.train(base.replace(strategy="sync")).wait(timeout=600)
        server = per_step(ps, 0)
        worker = per_step(ps, n - 1) if n > 1 else 0.0
        ring = max(per_step(sync, r) for r in range(n))
        rows.append({"workers": n, "ps server MB/step": server / 1e6, "ps worker MB/step": worker / 1e6,
                     "sync busiest worker MB/step": ring / 1e6,
                     "server / sync": server / ring if ring else float("nan")})
    by_n = {r["workers"]: r for r in rows}
    server, ring = "ps server MB/step", "sync busiest worker MB/step"
    ratios = {"ps server bytes, 4 workers / 2 workers": by_n[4][server] / by_n[2][server],
              "sync worker bytes, 4 workers / 2 workers": by_n[4][ring] / by_n[2][ring],
              "ps server / sync worker at 4 workers": by_n[4]["server / sync"]}
    return {"table": rows, "ratios": ratios,
            "note": "CNN on digits (fp32 gradients); bytes sent + received per step, from the records' ledger."}
