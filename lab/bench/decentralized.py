"""`python -m lab bench decentralized`: gossip SGD and DiLoCo against `sync` (chapter 08).

Three measurements, each on local worker processes in one gloo group (`lab.procs`, no cluster):

1. gossip (D-PSGD on a ring, self weight 1/3), 4 workers, the MLP on digits with Adam: rank 0's
   own replica's held-out accuracy at the last step (before the final averaging). Target >= 95%.
2. bytes per worker per step from the records' ledger, gossip and sync, at 4 and 8 workers: a
   gossip worker sends its parameters to its two neighbours (2 B) whatever n; a ring all-reduce
   sends 2 (n-1)/n B, 1.5 B at 4 and 1.75 B at 8 workers (x 7/6). Bytes: not noisy, always judged.
3. diloco (H = 50, outer Nesterov lr 0.7, momentum 0.9) against sync on the character LSTM, 2
   workers, the same steps (so the same samples): held-out perplexity at the last step (an outer
   step, so every replica is the anchor) within 5% of sync's, and >= 40x fewer bytes per sample
   over the training steps. The end-of-run consolidation (`detach` averages the inner Adam state
   once, 2 B) is reported apart: it does not grow with the run.

Quick mode shortens every run (the LSTM on shorter, fewer sequences): its perplexity comparison is
printed but not judged (two outer steps say little), byte targets still count.
"""
from __future__ import annotations

from statistics import mean

from . import benchmark
from .targets import Target


def bytes_per_step(outs) -> float:
    """Mean bytes sent per step, over workers and steps."""
    return mean(r["bytes_sent"] for o in outs for r in o["records"])


def bytes_per_sample(outs) -> float:
    """Bytes sent by all workers over the training steps, per training sample (or token)."""
    recs = [r for o in outs for r in o["records"]]
    return sum(r["bytes_sent"] for r in recs) / sum(r["n"] for r in recs)


def last_eval(outs, key: str) -> float:
    return [r for r in outs[0]["records"] if key in r][-1][key]


def end_bytes(outs) -> int:
    """Bytes all workers sent after their last record (the strategy's `detach`: the trainer puts
    them in `after_last_step`)."""
    return sum(o["after_last_step"].get("bytes_sent", 0) for o in outs)


@benchmark("decentralized")
def decentralized(quick: bool = False) -> dict:
    from lab.config import RunConfig
    from lab.procs import Group, train
    digits = RunConfig(eval_every=10**6, checkpoint_every=10**6).replace(**{
        "data.name": "digits", "model.name": "mlp", "optim.name": "adam", "optim.lr": 0.003})
    gossip = digits.replace(**{"strategy.name": "gossip", "strategy.self_weight": 1 / 3})
    short = {"steps": 5}
    rows, per_step = [], {}
    with Group(4, timeout=1800) as g:
        acc_run = train(gossip.replace(steps=250 if quick else 500, eval_every=50), g)
        per_step[("gossip", 4)] = bytes_per_step(acc_run)
        per_step[("sync", 4)] = bytes_per_step(train(digits.replace(**short), g))
    with Group(8, timeout=1800) as g:
        per_step[("gossip", 8)] = bytes_per_step(train(gossip.replace(**short), g))
        per_step[("sync", 8)] = bytes_per_step(train(digits.replace(**short), g))
    curve = [(r["step"] + 1, r["test_acc"]) for r in acc_run[0]["records"] if "test_acc" in r]
    acc = curve[-1][1]
    for (name, n), b in sorted(per_step.items()):
        rows.append({"run": f"{name}, {n} workers, MLP on digits", "kB sent/step/worker": b / 1e3,
                     "test acc (rank 0)": acc if (name, n) == ("gossip", 4) else None})

    steps, period = (100, 50) if quick else (400, 50)
    lstm = RunConfig(steps=steps, eval_every=10**6, checkpoint_every=10**6).replace(**{
        "data.name": "text", "model.name": "lstm", "optim.name": "adam", "optim.lr": 0.003})
    if quick:
        lstm = lstm.replace(**{"data.seq_len": 32, "data.batch_size": 16})
    with Group(2, timeout=3600) as g:
        sync = train(lstm.replace(**{"strategy.name": "sync"}), g)
        dil = train(lstm.replace(**{"strategy.name": "diloco", "strategy.period": period,
                                    "strategy.outer_lr": 0.7, "strategy.outer_momentum": 0.9}), g)
    ppl = {"sync": last_eval(sync, "perplexity"), "diloco": last_eval(dil, "perplexity")}
    bps = {"sync": bytes_per_sample(sync), "diloco": bytes_per_sample(dil)}
    with_end = {k: bps[k] + end_bytes(outs) / sum(r["n"] for o in outs for r in o["records"])
                for k, outs in (("sync", sync), ("diloco", dil))}
    for k in ("sync", "diloco"):
        rows.append({"run": f"{k}{f' H={period}' if k == 'diloco' else ''}, 2 workers, char LSTM, {steps} steps",
                     "held-out perplexity": ppl[k], "B sent/token (training)": bps[k],
                     "B sent/token (with end-of-run averaging)": with_end[k]})

    ratios = {
        "gossip bytes/step/worker, 8 workers / 4 workers": per_step[("gossip", 8)] / per_step[("gossip", 4)],
        "sync bytes/step/worker, 8 workers / 4 workers": per_step[("sync", 8)] / per_step[("sync", 4)],
        "gossip test acc, 4 workers": acc,
        "diloco / sync held-out perplexity": ppl["diloco"] / ppl["sync"],
        "sync / diloco bytes per sample": bps["sync"] / bps["diloco"],
        "sync / diloco bytes per sample, with the end-of-run averaging": with_end["sync"] / with_end["diloco"],
    }
    sync_theory = (2 * 7 / 8) / (2 * 3 / 4)
    targets = [
        Target("gossip: 4 workers' test accuracy on digits (rank 0's replica)", acc, ">=", 0.95),
        Target("gossip: bytes per worker per step, 8 / 4 workers (constant)", ratios[
            "gossip bytes/step/worker, 8 workers / 4 workers"], "between", (0.99, 1.01)),
        Target(f"sync: bytes per worker per step, 8 / 4 workers (theory {sync_theory:.3f})", ratios[
            "sync bytes/step/worker, 8 workers / 4 workers"], "between", (0.98 * sync_theory, 1.02 * sync_theory)),
        Target("diloco H=50 / sync held-out perplexity, same samples", ratios["diloco / sync held-out perplexity"],
               "<=", 1.05, noisy=quick, note="quick: two outer steps only" if quick else ""),
        Target("diloco H=50: sync / diloco bytes per sample", ratios["sync / diloco bytes per sample"], ">=", 40),
    ]
    return {"table": rows, "ratios": ratios, "targets": targets, "curve": curve,
            "note": "lab.procs workers (one thread each) on this machine; gossip self weight 1/3, Adam lr 0.003, "
                    "MLP 64 hidden, batch 32 per worker; LSTM: Embedding 64, LSTM 128 on pydoc text, batch "
                    f"{lstm.data.batch_size} x {lstm.data.seq_len} characters per worker; bytes from the records' ledger."}
