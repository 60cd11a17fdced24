"""`python -m lab bench stragglers`: what one slow worker costs each strategy (chapter 06).

Four workers, the last one slowed down 3x (`RunConfig.slowdown`), every strategy training the
same CNN on digits for the same number of steps per worker, hence the same number of samples:
`sync`, `ssp` (s = 2), `async` and `local` (H = 8), one after the other on the same cluster.

Throughput is the lab's usual figure (`RunData.summary()["throughput_total"]`): each worker's
samples over the seconds its steps took, summed over workers, i.e. how fast the cluster
consumes data while it trains. Under `sync` every worker's step lasts as long as the
straggler's; under `async` the fast ones go at their own pace. Wall-clock time is shown too:
since every worker here does the same number of steps, the straggler sets it under every
strategy (the fast workers finish early and wait for it at the end). Accuracy is that of the
final model every worker holds after the run (all updates applied), on the held-out split.
"""
from __future__ import annotations

from . import benchmark

STRAGGLER = 3.0


def final_accuracy(run_id: str) -> float:
    """Engine side: held-out accuracy of this worker's model after the run (after `detach`)."""
    from lab import worker
    tr = worker.RUNS[run_id].trainer
    return tr.task.evaluate(tr.model)["test_acc"]


def measure(cluster, configs, base) -> list:
    """Run each (label, knobs) config on `cluster`; one row of figures per config."""
    rows = []
    for label, knobs in configs:
        run = cluster.train(base.replace(**knobs, name=label)).wait(timeout=1800)
        s = run.summary()
        acc = cluster.client[cluster.engine_ids[0]].apply_async(final_accuracy, run.id).get(timeout=60)
        stale = [r["staleness"] for r in run.records if r["staleness"] is not None]
        per = s["per_worker"].values()
        rows.append({"strategy": label, "samples/s (sum of workers)": s["throughput_total"], "wall s": s["wall_s"],
                     "final test acc": acc, "mean staleness": sum(stale) / len(stale) if stale else 0.0,
                     "max staleness": max(stale, default=0), "wait s (fast worker)": s["per_worker"][0]["wait_s"],
                     "MB sent per worker-step": sum(p["bytes_sent_per_step"] for p in per) / len(per) / 1e6})
    return rows


@benchmark("stragglers")
def stragglers(quick: bool = False) -> dict:
    from lab.cluster import Cluster
    from lab.config import RunConfig
    workers = 4
    base = RunConfig(steps=120 if quick else 400, eval_every=10_000, checkpoint_every=10_000,
                     slowdown=[1.0] * (workers - 1) + [STRAGGLER], runs_dir="runs/bench-stragglers")
    configs = [("sync", {"strategy": "sync"}), ("ssp s=2", {"strategy": "ssp", "staleness": 2}),
               ("async", {"strategy": "async"}), ("local H=8", {"strategy": "local", "period": 8})]
    with Cluster.start(workers=workers, cluster_id="bench-stragglers", reuse=False) as cluster:
        rows = measure(cluster, configs, base)
    sync = rows[0]
    ratios = {}
    for r in rows[1:]:
        tput = "samples/s (sum of workers)"
        ratios[f"{r['strategy']} / sync throughput"] = r[tput] / sync[tput]
        ratios[f"{r['strategy']} - sync accuracy (points)"] = 100 * (r["final test acc"] - sync["final test acc"])
    return {"table": rows, "ratios": ratios,
            "note": f"{workers} workers, the last slowed {STRAGGLER:g}x, {base.steps} steps each "
                    f"(batch {base.data.batch_size}), CNN on digits, {base.optim.name} lr {base.optim.lr}. "
                    "Throughput: sum over workers of samples / busy seconds; target async >= 1.5x sync, "
                    "accuracy within 2 points."}
