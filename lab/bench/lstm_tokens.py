"""`python -m lab bench lstm-tokens`: the character LSTM's tokens/s per worker, plain and compressed.

The seeds' character LSTM on Python's help text (chapter 03), 2 workers, `sync` with no
compressor, with top-k 1% + error feedback and with PowerSGD rank 2 + error feedback. The three
alternate on the same engines (sync, topk, powersgd, sync, ...) so drift in the machine's load hits
them alike. Each side is the real `lab.train.Trainer` (strategy, compressor, byte ledger, records);
throughput is tokens (next-character predictions) per second per worker over the steps after
warm-up, and bytes are what each worker handed to the collectives per step.

Targets (bytes: always judged): with 2 workers each compressed variant sends at least 95% of the
fp32 / payload limit its format allows on the LSTM's shapes fewer bytes than sync. The tokens/s
ratios are reported per round (min / median / max) with no target: on 2 shared cores over
loopback compressing costs more time than it saves.
"""
from __future__ import annotations

import statistics

from . import benchmark
from .targets import Target, spread

VARIANTS = {  # label -> knobs on top of the LSTM / text / sync config
    "sync": {},
    "sync + topk 1% + EF": {"strategy.compression.name": "topk", "strategy.compression.ratio": 0.01,
                            "strategy.compression.error_feedback": True},
    "sync + powersgd r2 + EF": {"strategy.compression.name": "powersgd", "strategy.compression.rank": 2,
                                "strategy.compression.error_feedback": True},
}


def _side(cfg_dict: dict) -> dict:
    """Engine side: one Trainer run, no notebook polling; tokens, seconds and bytes of the timed steps."""
    from lab import worker
    from lab.config import RunConfig
    from lab.train import Trainer
    records = []
    Trainer(RunConfig.from_dict(cfg_dict), worker.context("bench"), records.append).run()
    warm = max(1, len(records) // 10)  # first steps pay for allocation and warm-up
    timed = records[warm:]
    return {"tokens": sum(r["n"] for r in timed), "seconds": timed[-1]["t"] - records[warm - 1]["t"],
            "bytes_sent": statistics.mean(r["bytes_sent"] for r in timed),
            "loss": statistics.mean(r["loss"] for r in records[-10:])}


def measure(cluster, cfgs: dict, rounds: int) -> dict:
    """Alternate the configs `rounds` times; per label, each round's per-worker tokens/s and bytes/step."""
    got = {k: {"tokens/s": [], "bytes": [], "loss": []} for k in cfgs}
    for _ in range(rounds):
        for label, cfg in cfgs.items():
            ars = [cluster.client[e].apply_async(_side, cfg.to_dict()) for e in cluster.engine_ids]
            outs = [ar.get(timeout=600) for ar in ars]
            got[label]["tokens/s"].append(statistics.mean(o["tokens"] / o["seconds"] for o in outs))
            got[label]["bytes"].append(statistics.mean(o["bytes_sent"] for o in outs))
            got[label]["loss"].append(statistics.mean(o["loss"] for o in outs))
    return got


@benchmark("lstm-tokens")
def lstm_tokens(quick: bool = False) -> dict:
    """Per-worker tokens/s of the char LSTM under sync, topk and powersgd; ratios to plain sync."""
    from lab.cluster import Cluster
    from lab.config import RunConfig
    workers = 2
    base = RunConfig(steps=20 if quick else 300, eval_every=10**6, checkpoint_every=10**6).replace(
        **{"model.name": "lstm", "data.name": "text", "strategy.name": "sync"})
    cfgs = {label: base.replace(**knobs) for label, knobs in VARIANTS.items()}
    with Cluster.start(workers=workers, cluster_id="bench-lstm", reuse=False) as cluster:
        dev = cluster.infos[0]["device"]
        m = measure(cluster, cfgs, rounds=1 if quick else 3)  # quick: the byte targets need one round
    med = {k: {f: statistics.median(v[f]) for f in v} for k, v in m.items()}
    rows = [{"variant": k, "workers": workers, "device": dev,
             "tokens/step/worker": base.data.batch_size * base.data.seq_len, "steps": base.steps,
             "tokens/s per worker (median)": med[k]["tokens/s"],
             "kB sent/step": med[k]["bytes"] / 1e3, "final loss": med[k]["loss"],
             "rounds": ", ".join(f"{v:.0f}" for v in m[k]["tokens/s"])} for k in cfgs]
    from .compression import limit, model_shapes
    shapes = model_shapes(base)
    ratios, targets = {}, []
    for k in list(cfgs)[1:]:
        ratios[f"{k} / sync tokens/s"] = spread([c / s for c, s in zip(m[k]["tokens/s"], m["sync"]["tokens/s"])])
        ratios[f"sync / {k} bytes per step"] = med["sync"]["bytes"] / med[k]["bytes"]
        cap = limit(cfgs[k], shapes)
        targets.append(Target(f"sync / {k} bytes per step (limit {cap:.4g})", ratios[f"sync / {k} bytes per step"],
                              ">=", 0.95 * cap))
    return {"table": rows, "ratios": ratios, "targets": targets, "rounds": m,
            "note": "Char LSTM (Embedding 64, LSTM 128) on pydoc text, batch 32 x 64 characters per worker, Adam; "
                    "rounds alternate the variants on the same engines; throughput excludes the first 10% of steps."}
