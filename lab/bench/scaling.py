"""`python -m lab bench scaling`: what n workers buy, measured beside an alpha-beta cost model (chapter 13).

For 1, 2, 4 and 8 workers under sync, ps, async, local and sync with top-k 1% + EF (all-gathered),
on loopback: throughput (samples/s over all workers, timed steps), wire bytes per worker per step
(the run's ledger, framing included; `RunData.wire`), the busiest node's bytes per step (the
parameter server's), communication seconds per step measured (`comm_s`, the busiest rank: mean and median) and wall
time to 95% test accuracy on digits, the machine's threads ready to run while the row trained
(`results.Runnable`: above the core count, a thread woken by a message waits for a core) and how
long gloo's threads did wait for a core per wake-up (`results.CoreWaits`, the kernel's count). For rows
of one collective, that collective alone on the same cluster, and again right after each worker
computed for the row's compute time per step (`probe`'s `work_s`): training's cost without training.
One worker is a group of one of the 2-worker cluster
(`cluster.split`), so every worker count has one CPU thread per worker.

Beside each, the cost model's prediction (`lab.costmodel`: ring all-reduce for sync, a star for ps
and async, ring / H for local, all-gather of the compressed payload for top-k) and its error. The
model's constants come from ONE measurement per network, on its 2-worker cluster: an all-reduce of
4 bytes, of 8 B bytes and (shaped links) of B bytes after 50 ms of rest (`probe`: median of repeats; the rested one's fastest), solved for
alpha, beta and the burst a shaped link's token bucket lets through after resting (`AlphaBeta.fit`),
stated in the note and the JSON (`rounds.constants`). Each step's prediction takes the busiest
rank's measured compute + wait time as the link's rest.

Then the same on hosts on real links (`Cluster.start(hosts=n, link_mbps=100)`, network namespaces
shaped by tbf; needs root, else those rows are skipped with one line): there communication is the
link's, and the target is the model's comm time per step within 20% of the measured one for every
row (ratios named "... comm s/step model / measured"), judged in full runs (timing: noisy).

A quick run: loopback 1, 2, 4 workers under sync and ps, 20 steps; hosts 2 workers sync and ps,
10 steps (reported, not judged). The machine this runs on in CI has 2 cores: past 2 workers the
workers share cores, so compute stops scaling there; the note says where it did in this run, and
where the busiest link's bytes keep growing (communication).
"""
from __future__ import annotations

import statistics
import tempfile
import time

from . import benchmark
from .targets import Target

TARGET = 0.95
LINK_MBPS = 100.0

# (label, knobs): the strategies whose scaling the chapter discusses
VARIANTS = [
    ("sync", {"strategy": "sync"}),
    ("ps", {"strategy": "ps"}),
    ("async", {"strategy": "async"}),
    ("local", {"strategy": "local"}),
    ("sync topk 1% + EF", {"strategy": "sync", "compressor": "topk", "ratio": 0.01, "error_feedback": True}),
]
QUICK = ("sync", "ps")


def probe(nbytes: int, reps: int, rest_s: float = 0.0, gather: bool = False, work_s: float = 0.0,
          ring: bool = False) -> float:
    """Engine side: seconds of a plain all-reduce (`gather`: all-gather, as `lab.comm` makes it) of `nbytes` on the
    cluster's process group: the median of `reps`, or after `rest_s` of quiet each, the fastest (a
    rested link is the best case, which a loaded machine's scheduling delays only hide). `work_s`:
    before each, this worker computes for that much of its own CPU time (a step's forward and
    backward, as in training) and everyone meets at a barrier, so nobody computes while it is timed.
    `ring`: gather by gloo's own ring all-gather instead (chapter 13 sets the two side by side).
    On a split cluster (`Cluster.split`), the engine's group: call it on that group's engines."""
    import torch
    import torch.distributed as dist
    from lab.comm import direct_all_gather
    from lab.worker import STATE
    pg = (STATE.get("group") or {}).get("pg")   # this engine's group when split (None: the whole cluster)
    t = torch.zeros(max(1, nbytes // 4))
    out = [torch.empty_like(t) for _ in range(dist.get_world_size(pg))]
    a = torch.ones(64, 64)
    dist.barrier(group=pg)
    times = []
    for _ in range(reps):
        until = time.thread_time() + work_s
        while time.thread_time() < until:
            a @ a
        dist.barrier(group=pg)
        time.sleep(rest_s)
        t0 = time.perf_counter()
        if gather and ring:
            dist.all_gather(out, t, group=pg)
        elif gather:   # as lab.comm gathers on gloo (the compressed payloads' path)
            direct_all_gather(t, len(out), pg)
        else:
            dist.all_reduce(t, group=pg)
        times.append(time.perf_counter() - t0)
    return min(times) if rest_s else statistics.median(times)


LARGE = 8      # the large probe: 8 models' bytes, so a burst of ~100 kB is a few % of it
SMALL_REPS = 10  # the latency probe repeats 10x as often as the others (cheap: 4 bytes)
REST_S = 0.05  # long enough for a shaped link's token bucket to refill (lab.hosts: ~10 ms of traffic)


def fit(cluster, model_bytes: int, reps: int):
    """The one measurement: a 2-worker all-reduce (ring: 2 messages) of 4 bytes and of 8 B bytes (far
    past a shaped link's burst), and on shaped links of B bytes after a rest (what the token
    bucket's burst saves; loopback has none). The 4-byte one, the latency's (the noisiest
    constant, and a fraction of a ms), repeats `SMALL_REPS` times as often."""
    from lab.costmodel import AlphaBeta
    shaped = cluster.net is not None and any(cluster.net.rates)   # hosts whose links have a rate
    t = {}
    probes = [("small", 4, 0.0, SMALL_REPS * reps), ("large", LARGE * model_bytes, 0.0, reps)]
    for key, nb, rest, n in probes + ([("rested", model_bytes, REST_S, reps)] if shaped else []):
        outs = [cluster.client[e].apply_async(probe, nb, n, rest) for e in cluster.engine_ids]
        t[key] = max(o.get(timeout=300) for o in outs)
    ab = AlphaBeta.fit((2, 4, t["small"]), (2, LARGE * model_bytes, t["large"]),
                       rested=(2, model_bytes, t["rested"]) if shaped else None)
    return ab, t


def base_config(steps: int, runs_dir: str):
    """The compression bench's recipe: momentum SGD, lr 0.05, 10% warm-up, cosine to 0."""
    from lab.config import RunConfig
    return RunConfig(steps=steps, eval_every=10, runs_dir=runs_dir, checkpoint_every=10 ** 6).replace(
        **{"optim.name": "momentum", "optim.lr": 0.05, "optim.schedule": "cosine", "optim.warmup_steps": steps // 10})


def model_inputs(run, model_bytes: int):
    """What the model is given for a run: (algorithm, payload bytes, its options), and the records
    it is judged on: those after warm-up, by rank, and the busiest rank's (most comm time)."""
    from lab import costmodel
    n, cfg = run.workers, run.cfg
    recs = [r for r in run.records if r["step"] >= max(1, cfg.steps // 10)] or run.records  # after warm-up
    by_rank = {}
    for r in recs:
        by_rank.setdefault(r["rank"], []).append(r)
    busiest = max(by_rank.values(), key=lambda rows: statistics.fmean(r["comm_s"] for r in rows))
    algo, kw = costmodel.STRATEGY_ALGORITHM[cfg.strategy.name](cfg, n)
    if cfg.strategy.name == "local" and n > 1:   # steps per averaging in this window (not exactly H)
        kw = {"period": round(len(busiest) / max(1, sum(bool(r.get("averaged")) for r in busiest)), 2)}
    nbytes = model_bytes
    if cfg.strategy.compression.name != "none":   # all-gathered payloads of b bytes, one call per bucket
        algo = "allgather"
        nbytes = statistics.fmean(r["payload_bytes"] for r in recs)
        kw = {"calls": max(1, round(statistics.fmean(r["messages"] for r in busiest) / (n - 1)))} if n > 1 else {}
    return algo, nbytes, kw, recs, by_rank, busiest


def measure(run, ab, model_bytes: int) -> dict:
    """One run's figures and the model's prediction of its comm time per step."""
    import numpy
    from lab import costmodel
    n, cfg = run.workers, run.cfg
    algo, nbytes, kw, recs, by_rank, busiest = model_inputs(run, model_bytes)
    comm = statistics.fmean(r["comm_s"] for r in busiest)
    idle = statistics.fmean(r["compute_s"] + r["wait_s"] for r in busiest)  # the link rests meanwhile
    wire = run.wire()
    workers = [x for x in wire["nodes"] if x["node"].startswith("worker")]
    wall = max(r["t"] for r in run.records)
    # samples/s over the timed steps (after warm-up, without rank 0's evaluations), summed over workers
    rate = sum(sum(r["n"] for r in rows) / sum(r["step_s"] for r in rows) for rows in by_rank.values())
    predicted = ab.predict(algo, n, nbytes, idle_s=idle, **kw)
    return {"samples/s": rate,
            "wire B/worker/step": statistics.fmean(x["wire_per_step"] for x in workers),
            "busiest node B/step": max(x["wire_per_step"] for x in wire["nodes"]),
            "comm s/step measured": comm, "comm s/step model": predicted,
            # the typical step's (a network model's case), apart from the stalls of busy cores in the mean
            "comm s/step median": statistics.median(r["comm_s"] for r in busiest),
            # the slow tenth of its steps: a mean far above the median is a few steps' stalls, not every step's
            "comm s/step p90": float(numpy.percentile([r["comm_s"] for r in busiest], 90)),
            "model error": costmodel.error(predicted, comm) if n > 1 and comm > 0 else None,
            "model": f"{algo}{'' if not kw else ' ' + ', '.join(f'{k}={v}' for k, v in kw.items())}",
            "test_acc": run.final("test_acc"),
            "time to 95% s": run.time_to("test_acc", TARGET), "wall s": wall}


def sweep(network: str, counts, variants, steps: int, runs_dir: str, start_kw: dict, reps: int, until=None):
    """Every variant at every worker count on one kind of network; the fit from its 2-worker cluster."""
    from lab.cluster import Cluster
    from lab.bench.compression import model_shapes
    cfg0 = base_config(steps, runs_dir)
    model_bytes = 4 * sum(_numel(s) for s in model_shapes(cfg0))
    rows, ab, probe_s = [], None, {}
    for n in sorted(set(counts) - {1}, key=lambda n: (n != 2, n)):   # 2 first: the fit comes from it
        kw = dict(start_kw)
        if kw.get("hosts"):
            kw["hosts"] = n
        cid = f"bench-scaling-{'shaped' if kw.get('hosts') else 'loopback'}-{n}"
        with Cluster.start(workers=n, cluster_id=cid, reuse=False, device="cpu", timeout_s=120, **kw) as cluster:
            if ab is None:
                ab, probe_s = fit(cluster, model_bytes, reps)
            for label, knobs in variants:
                cfg = cfg0.replace(**knobs, name=f"{label} x{n} {network}")
                run, runnable, waits = _run(cluster, cfg, until)
                algo, nbytes, _, _, _, busiest = model_inputs(run, model_bytes)
                compute = statistics.fmean(r["compute_s"] for r in busiest)
                rows.append({"network": network, "variant": label, "workers": n} | measure(run, ab, model_bytes)
                            | {"runnable threads": runnable, "comm thread core wait s": waits.per_wake_s(),
                               "isolated collective s": isolated(cluster, algo, nbytes, reps),
                               "after compute collective s": isolated(cluster, algo, nbytes, reps, work_s=compute)})
            if n == 2 and 1 in counts:   # one worker: a group of one of this cluster (same threads per worker)
                alone = cluster.split([1, 1])[0]
                run, runnable, _ = _run(alone, cfg0.replace(name=f"one worker {network}"), until)
                rows.append({"network": network, "variant": "one worker", "workers": 1} | measure(run, ab, model_bytes)
                            | {"runnable threads": runnable})
                cluster.merge()
    rows.sort(key=lambda r: (r["variant"] != "one worker", r["variant"], r["workers"]))
    return rows, ab, probe_s, model_bytes


def isolated(cluster, algo: str, nbytes: float, reps: int, work_s: float = 0.0):
    """The row's collective alone on the same cluster, nobody training (median seconds, the slowest
    rank's): what it costs with the cores free, beside what it cost inside training (None: a row
    whose algorithm is no single collective: ps, async, local). `work_s`: each worker first computes
    for that long (the row's compute per step), then all meet, so nobody computes during it."""
    if algo not in ("ring", "allgather", "allgather-ring") or len(cluster.engine_ids) < 2:
        return None
    outs = [cluster.client[e].apply_async(probe, int(nbytes), reps, 0.0, algo != "ring", work_s, algo == "allgather-ring")
            for e in cluster.engine_ids]
    return max(o.get(timeout=300) for o in outs)


def _run(cluster, cfg, until):
    """Train; with `until`, stop once rank 0's test accuracy reached it (time to accuracy, not to the end).
    Returns the run, the machine's mean runnable threads while it trained (`results.Runnable`) and
    how long the engines' threads waited for a core when woken meanwhile (`results.CoreWaits`)."""
    from .results import CoreWaits, Runnable
    with Runnable() as load, CoreWaits(cluster.pids) as waits:
        run = cluster.train(cfg)
        while not run.done:
            run.poll()
            if until is not None and (run.final("test_acc") or 0) >= until:
                run.stop()
                break
            time.sleep(0.2)
        run = run.wait(timeout=600)
    return run, load.mean, waits


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _where_it_stops(rows) -> str:
    """Where throughput stopped growing (compute) and where the busiest link's bytes kept growing (comm)."""
    out = []
    one = next((r["samples/s"] for r in rows if r["variant"] == "one worker"), None)
    for v in sorted({r["variant"] for r in rows} - {"one worker"}):
        pts = sorted((r["workers"], r["samples/s"]) for r in rows if r["variant"] == v)
        if one:
            pts = [(1, one)] + pts
        stop = next((a for (a, x), (b, y) in zip(pts, pts[1:]) if y < 1.1 * x), None)
        out.append(f"{v}: throughput " + " -> ".join(f"{x:.0f}" for _, x in pts) + " samples/s"
                   + (f", stops growing past {stop} worker{'s' if stop > 1 else ''}" if stop else ", still growing"))
    return "; ".join(out)


def _host_note(rows) -> str:
    """Per network and row with one collective: its time alone, inside training, and the model's."""
    out = []
    for net in dict.fromkeys(r["network"] for r in rows):
        for v in dict.fromkeys(r["variant"] for r in rows if r["network"] == net):
            pts = sorted((r["workers"], r["isolated collective s"], r["after compute collective s"],
                          r["comm s/step median"], r["comm s/step model"], r.get("comm thread core wait s"),
                          r["comm s/step p90"], r["comm s/step measured"])
                         for r in rows if r["network"] == net and r["variant"] == v
                         and r.get("isolated collective s") is not None)
            if pts:
                ms = lambda i: " / ".join(f"{p[i] * 1e3:.1f}" for p in pts)  # noqa: E731
                waits = "" if any(p[5] is None for p in pts) else \
                    f" (gloo's threads waited {' / '.join(f'{p[5] * 1e6:.0f}' for p in pts)} us for a core per wake-up)"
                out.append(f"{net} {v} x{'/'.join(str(p[0]) for p in pts)}: alone {ms(1)}, "
                           f"right after a step's compute {ms(2)}, in training (median) {ms(3)} (p90 {ms(6)}, mean {ms(7)})"
                           f"{waits}, model {ms(4)}")
    return "; ".join(out)


def _runnable_note(rows) -> str:
    """Per network and variant: the machine's mean runnable threads while each worker count trained."""
    out = []
    for net in dict.fromkeys(r["network"] for r in rows):
        parts = []
        for v in dict.fromkeys(r["variant"] for r in rows if r["network"] == net):
            pts = sorted((r["workers"], r["runnable threads"]) for r in rows if r["network"] == net
                         and r["variant"] == v and r.get("runnable threads") is not None)
            if pts:
                parts.append(f"{v} x{'/'.join(str(n) for n, _ in pts)}: " + " / ".join(f"{x:.1f}" for _, x in pts))
        if parts:
            out.append(f"{net}: " + "; ".join(parts))
    return ". ".join(out)


def _comm_note(rows, model_bytes: int) -> str:
    """The busiest node's wire bytes sent per step (in B) and comm time per step, by worker count, for sync and ps."""
    out = []
    for v, shape in (("sync", "sent: 2(n-1)/n B, levelling off under 2 B"), ("ps", "sent by the server: (n-1) B, and as much received")):
        pts = sorted((r["workers"], r["busiest node B/step"] / model_bytes, r["comm s/step measured"])
                     for r in rows if r["variant"] == v)
        if pts:
            out.append(f"{v}'s busiest node " + ", ".join(f"{b:.2f} B" for _, b, _ in pts) + " per step at "
                       + ", ".join(str(n) for n, _, _ in pts) + f" workers ({shape}), comm "
                       + " -> ".join(f"{c * 1e3:.0f}" for _, _, c in pts) + " ms/step on the link")
    return "; ".join(out) + ("; so the server's link stops the scaling first" if len(out) == 2 else "")


@benchmark("scaling")
def scaling(quick: bool = False) -> dict:
    import os
    from lab import hosts
    runs_dir = tempfile.mkdtemp(prefix="lab-bench-scaling-")
    variants = [v for v in VARIANTS if v[0] in QUICK] if quick else VARIANTS
    counts = (1, 2, 4) if quick else (1, 2, 4, 8)
    rows, ab, probe_s, model_bytes = sweep("loopback", counts, variants, 20 if quick else 300, runs_dir, {},
                                           reps=5 if quick else 20, until=None if quick else TARGET)
    notes = [f"digits CNN ({model_bytes} B fp32), momentum SGD lr 0.05, batch 32 per worker, {os.cpu_count()} cores.",
             f"loopback model: {ab} (fitted from one 2-worker all-reduce of 4 B and {model_bytes} B: "
             f"{probe_s['small'] * 1e6:.0f} us and {probe_s['large'] * 1e3:.2f} ms for 8 B).",
             "Compute: " + _where_it_stops(rows) + "."]
    ratios, targets, constants = {}, [], {"loopback": ab.to_dict()}
    why = hosts.unavailable()
    if why:
        notes.append(f"shaped-link rows skipped: {why}")
    else:
        shaped, sab, sprobe, _ = sweep(f"{LINK_MBPS:g} Mbit/s", (2,) if quick else (2, 4, 8), variants,
                                       10 if quick else 40, runs_dir, {"hosts": 2, "link_mbps": LINK_MBPS},
                                       reps=3 if quick else 10)
        rows += shaped
        constants["shaped"] = sab.to_dict()
        notes.append(f"shaped model: {sab} (nominal {LINK_MBPS:g} Mbit/s; fitted the same way: "
                     f"{sprobe['small'] * 1e6:.0f} us, {sprobe['large'] * 1e3:.2f} ms for 8 B, and B in "
                     f"{sprobe['rested'] * 1e3:.2f} ms after {REST_S * 1e3:.0f} ms of rest).")
        for r in shaped:
            if r["workers"] < 2 or not r["comm s/step measured"]:
                continue
            name = f"{r['network']} {r['variant']} x{r['workers']}: comm s/step model / measured"
            ratio = r["comm s/step model"] / r["comm s/step measured"]
            ratios[name] = ratio
            targets.append(Target(name, ratio, "between", (0.8, 1.2), noisy=True,
                                  note="timing on a shared machine; the model fitted once per network"))
        notes.append("Communication: " + _comm_note(shaped, model_bytes) + ".")
    for r in rows:
        if r["variant"] != "one worker" and r["model error"] is not None:
            ratios[f"{r['network']} {r['variant']} x{r['workers']}: model error (model / measured - 1)"] = r["model error"]
    if not quick:
        notes.append("On loopback the 'communication' of 2 cores is CPU time (copies, gloo's threads), "
                     "which the alpha-beta model, a network model, does not capture past 2 workers.")
    runnable = _runnable_note(rows)
    if runnable:
        notes.append(f"Threads ready to run while each row trained (mean of /proc/stat's procs_running; "
                     f"{os.cpu_count()} cores: above that, a thread woken by a message waits for a core): {runnable}.")
    host = _host_note(rows)
    if host:
        notes.append("The same collective alone, nobody training; right after each worker computed for a step's "
                     "compute time (then all meet, so nobody computes while it runs); inside training; and the "
                     f"model (ms by worker count): {host}. Alone it already grows with processes per core "
                     "(each message wakes threads that must get a core); what the compute before it and the "
                     "training around it add is the host's doing too, not the network's.")
    return {"table": rows, "ratios": ratios, "targets": targets, "rounds": {"constants": constants},
            "note": " ".join(notes)}
