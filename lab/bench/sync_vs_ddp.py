"""`python -m lab bench sync-vs-ddp`: the lab's `sync` against PyTorch's DistributedDataParallel.

Same engines, same process group, model, data, batch and steps; the two alternate (lab, DDP,
lab, DDP, ...) so drift in the machine's load hits both alike. The lab side is the real
`lab.train.Trainer` (strategy, byte ledger, records), not a stripped copy; DDP is the plain
library loop. Throughput is samples per second per worker, over the timed steps after warm-up.

Target: lab / DDP throughput >= 0.95, the median of the per-round ratios (each round's lab run
against the DDP run right after it), min and max beside it. A timing target: judged in full runs
(5 rounds), reported only under `--quick` (3 short rounds on a shared machine cannot hold 5%).
"""
from __future__ import annotations

import statistics
import time

from . import benchmark
from .targets import Target, spread


def _lab_side(cfg_dict: dict) -> dict:
    """Engine side: one lab `sync` run, no notebook polling; returns its timing."""
    from lab import worker
    from lab.config import RunConfig
    from lab.train import Trainer
    cfg = RunConfig.from_dict(cfg_dict)
    records = []
    Trainer(cfg, worker.context("bench"), records.append).run()
    warm = max(1, len(records) // 10)
    timed = records[warm:]
    span = timed[-1]["t"] - records[warm - 1]["t"]
    return {"samples": sum(r["n"] for r in timed), "seconds": span}


def _ddp_side(cfg_dict: dict) -> dict:
    """Engine side: the same training with torch's DistributedDataParallel."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from lab import worker
    from lab.config import RunConfig
    from lab.train import build
    cfg = RunConfig.from_dict(cfg_dict)
    rank, world = worker.STATE["rank"], worker.STATE["world"]
    task, model, _ = build(cfg, worker.STATE["device"])
    ddp = DDP(model, bucket_cap_mb=cfg.strategy.bucket_mb)
    from lab.optim import make_optimizer
    opt = make_optimizer(ddp.module, cfg.optim)
    worker.STATE.setdefault("bench_keep", []).append(ddp)  # never let a DDP object be collected mid-cluster
    batches = task.batches(rank, world, cfg.data.batch_size)
    warm = max(1, cfg.steps // 10)
    dist.barrier()
    samples, t_start = 0, None
    for step in range(cfg.steps):
        if step == warm:
            t_start = time.perf_counter()
        loss, n, _ = task.loss(ddp, next(batches))
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        if step >= warm:
            samples += n
    return {"samples": samples, "seconds": time.perf_counter() - t_start}


def measure(cluster, cfg, rounds: int = 3) -> dict:
    """Alternate lab and DDP `rounds` times on `cluster`; per-worker samples/s of each."""
    sides = {"lab sync": _lab_side, "DDP": _ddp_side}
    got = {k: [] for k in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            ars = [cluster.client[e].apply_async(fn, cfg.to_dict()) for e in cluster.engine_ids]
            outs = [ar.get(timeout=600) for ar in ars]
            got[name].append(statistics.mean(o["samples"] / o["seconds"] for o in outs))
    return {k: statistics.median(v) for k, v in got.items()} | {"all": got}


@benchmark("sync-vs-ddp")
def sync_vs_ddp(quick: bool = False) -> dict:
    from lab.cluster import Cluster
    from lab.config import RunConfig
    rows, ratios = [], {}
    workers = 2
    cfg = RunConfig(steps=40 if quick else 400)
    cfg.eval_every = cfg.steps  # DDP's loop evaluates nothing: neither does the lab's, until the end
    cfg.strategy.name = "sync"
    with Cluster.start(workers=workers, cluster_id="bench-ddp", reuse=False) as cluster:
        dev = cluster.infos[0]["device"]
        m = measure(cluster, cfg, rounds=3 if quick else 5)
        for name in ("lab sync", "DDP"):
            rows.append({"implementation": name, "workers": workers, "device": dev, "batch/worker": cfg.data.batch_size,
                         "steps": cfg.steps, "samples/s per worker (median)": m[name],
                         "rounds": ", ".join(f"{v:.0f}" for v in m["all"][name])})
    per_round = [lab / ddp for lab, ddp in zip(m["all"]["lab sync"], m["all"]["DDP"])]
    ratio = spread(per_round)
    ratios["lab / DDP throughput (median of rounds)"] = ratio["median"]
    targets = [Target("lab / DDP throughput", ratio["median"], ">=", 0.95, noisy=True, spread=ratio)]
    return {"table": rows, "ratios": ratios, "targets": targets, "rounds": m["all"],
            "note": "CNN on digits, Adam; rounds alternate lab and DDP on the same engines."}
