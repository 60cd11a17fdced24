"""`python -m lab bench ps-load`: the parameter server's link against a ring all-reduce (chapter 05).

For 1 to 4 workers, a few steps of `ps` and of `sync` on the same cluster, bytes taken from the
records' ledger (what each collective or message really carried, by its algorithm). With a model
of B bytes, the server receives (n-1) gradients and sends (n-1) parameter copies per step,
2 (n-1) B in all, growing with n; each worker of a ring all-reduce sends and receives
2 (n-1)/n B, which stays under 4 B however many workers there are.

Targets (bytes, so noise cannot move them; 2% tolerance for the ledger's small extras such as
sync's 4-byte arrival slot): at 4 workers the server's bytes per step are 2 (n-1) B and a ring
worker's (sent + received) 4 (n-1)/n B, B the model's fp32 bytes; in a full run also, from 2 to 4
workers, the server's bytes triple, (2*3)/(2*1), and a ring worker's grow 1.5x. A quick run
measures 4 workers only (each cluster start costs seconds).
"""
from __future__ import annotations

import tempfile
from statistics import mean

from . import benchmark
from .targets import Target


def per_step(run, rank: int) -> float:
    """Mean bytes (sent + received) per step of one rank."""
    rows = [r for r in run.records if r["rank"] == rank]
    return mean(r["bytes_sent"] + r["bytes_recv"] for r in rows)


def model_bytes(cfg) -> int:
    """B: the model's parameters in fp32."""
    from lab.train import build
    return sum(4 * p.numel() for p in build(cfg)[1].parameters())


@benchmark("ps-load")
def ps_load(quick: bool = False) -> dict:
    from lab.cluster import Cluster
    from lab.config import RunConfig
    base = RunConfig(steps=5 if quick else 20, runs_dir=tempfile.mkdtemp(prefix="lab-bench-ps-load-"))
    rows = []
    for n in ((4,) if quick else range(1, 5)):
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
    b = model_bytes(base) / 1e6
    theory = {"ps server bytes at 4 workers / 2 (n-1) B": (by_n[4][server] / (2 * 3 * b), 1.0),
              "sync worker bytes at 4 workers / 4 (n-1)/n B": (by_n[4][ring] / (4 * 3 / 4 * b), 1.0)}
    if 2 in by_n:
        theory |= {"ps server bytes, 4 workers / 2 workers": (by_n[4][server] / by_n[2][server], 3.0),
                   "sync worker bytes, 4 workers / 2 workers": (by_n[4][ring] / by_n[2][ring], 1.5)}
    ratios = {k: v for k, (v, _) in theory.items()} | {"ps server / sync worker at 4 workers": by_n[4]["server / sync"]}
    targets = [Target(f"{k} (theory {x:g})", v, "between", (0.98 * x, 1.02 * x)) for k, (v, x) in theory.items()]
    return {"table": rows, "ratios": ratios, "targets": targets,
            "note": f"CNN on digits (fp32 gradients, B = {b:.4g} MB); bytes sent + received per step, "
                    "from the records' ledger."}
