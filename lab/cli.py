"""Headless use: `python -m lab run | compare | bench | runs`.

    python -m lab run --strategy sync --workers 2 --model cnn --data digits --steps 300
    python -m lab run --strategy sync --workers 2 --json
    python -m lab compare --strategies sync,async,local --workers 2 --steps 200 --report cmp.html
    python -m lab bench sync-vs-ddp
    python -m lab runs

A bad knob prints one line naming it and its allowed range, and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional

from .config import RunConfig, set_path
from .errors import LabError

# (flag, config path, type, help) — one table, so a new knob is one line
KNOBS = [
    ("--strategy", "strategy.name", str, "sync, ps, async, ssp, local, compressed"),
    ("--model", "model.name", str, "cnn, mlp, lstm, gru, actor_critic"),
    ("--data", "data.name", str, "digits, text, cifar10, cartpole"),
    ("--steps", "steps", int, "steps per worker"),
    ("--lr", "optim.lr", float, "learning rate"),
    ("--optimizer", "optim.name", str, "sgd, momentum, adam"),
    ("--schedule", "optim.schedule", str, "lr schedule: constant, cosine, linear"),
    ("--warmup-steps", "optim.warmup_steps", int, "linear lr warm-up steps"),
    ("--batch-size", "data.batch_size", int, "per worker"),
    ("--compressor", "strategy.compression.name", str, "none, fp16, topk, powersgd, ..."),
    ("--ratio", "strategy.compression.ratio", float, "topk / randomk share kept"),
    ("--levels", "strategy.compression.levels", int, "qsgd levels"),
    ("--rank", "strategy.compression.rank", int, "powersgd rank"),
    ("--base", "strategy.base", str, "with --strategy compressed: sync, ps, async or ssp"),
    ("--staleness", "strategy.staleness", int, "ssp bound s"),
    ("--period", "strategy.period", int, "local SGD averaging period H"),
    ("--bandwidth-mbps", "link.bandwidth_mbps", float, "SIMULATED link bandwidth"),
    ("--latency-ms", "link.latency_ms", float, "SIMULATED link latency"),
    ("--shard", "data.shard", str, "iid or dirichlet"),
    ("--alpha", "data.alpha", float, "Dirichlet label skew"),
    ("--data-path", "data.path", str, "cifar10 directory or text file"),
    ("--seed", "data.seed", int, "seed"),
    ("--dtype", "model.dtype", str, "float32 or float64"),
    ("--dropout", "model.dropout", float, "dropout probability"),
    ("--eval-every", "eval_every", int, "steps between test metrics"),
    ("--name", "name", str, "a label for the run"),
    ("--runs-dir", "runs_dir", str, "where runs are saved"),
]


def _add_run_args(p: argparse.ArgumentParser, multi: bool = False):
    p.add_argument("--workers", type=int, default=2, help="number of workers (engines)")
    p.add_argument("--slowdown", type=str, default="", help="per-worker slow-down factors, e.g. 1,3")
    p.add_argument("--error-feedback", action="store_true", help="keep compression residuals")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--report", type=str, default="", help="write an HTML report here")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before giving up on a run")
    for flag, path, typ, hlp in KNOBS:
        if multi and flag == "--strategy":
            continue
        p.add_argument(flag, type=typ, default=None, help=hlp)


def config_from_args(a) -> RunConfig:
    cfg = RunConfig()
    for flag, path, _, _ in KNOBS:
        v = getattr(a, flag[2:].replace("-", "_"), None)
        if v is not None:
            set_path(cfg, path, v)
    if a.slowdown:
        try:
            cfg.slowdown = [float(x) for x in a.slowdown.split(",")]
        except ValueError:
            from .errors import ConfigError
            raise ConfigError("slowdown", "comma-separated factors in [1, 100], e.g. 1,3", a.slowdown) from None
    if a.error_feedback:
        cfg.strategy.compression.error_feedback = True
    return cfg


def format_summary(s: dict) -> str:
    lines = [f"run {s['id']}  ({s['strategy']}, compressor {s['compressor']}, {s['workers']} workers, "
             f"{s['steps']} steps, {s['status']}, {s['wall_s']:.1f} s)"]
    for k in ("test_acc", "perplexity", "return", "test_loss"):
        if k in s:
            lines.append(f"  final {k:<10} {s[k]:.4f}")
    for r, w in s["per_worker"].items():
        lines.append(f"  worker {r}: {w['throughput']:8.1f} {s['unit']}/s   "
                     f"{w['bytes_sent_per_step'] / 1e3:9.1f} kB sent/step   {w['bytes_recv_per_step'] / 1e3:9.1f} kB recv/step")
        # the parameter server it hosts, when its traffic is not the worker's own (async / ssp serve
        # from a thread beside the worker; under ps the worker *is* the server: same bytes as above)
        if "server_bytes_sent_per_step" in w and (w["server_bytes_sent_per_step"], w["server_bytes_recv_per_step"]) \
                != (w["bytes_sent_per_step"], w["bytes_recv_per_step"]):
            lines.append(f"  server on worker {r}:{'':17}{w['server_bytes_sent_per_step'] / 1e3:9.1f} kB sent/step   "
                         f"{w['server_bytes_recv_per_step'] / 1e3:9.1f} kB recv/step")
    return "\n".join(lines)


def cmd_run(a) -> int:
    from .cluster import Cluster
    from .runs import Run
    cfg = config_from_args(a)
    cfg.validate(workers=a.workers)
    with Cluster.start(workers=a.workers, cluster_id=f"cli-{int(time.time() * 1000) % 10**9}", reuse=False) as cluster:
        run = Run.start(cluster, cfg)
        run.wait(timeout=a.timeout)
    return _emit([run], a)


def cmd_compare(a) -> int:
    from .cluster import Cluster
    from .runs import Run
    base = config_from_args(a)
    names = [s.strip() for s in a.strategies.split(",") if s.strip()]
    cfgs = [base.replace(**{"strategy.name": n, "name": n}) for n in names]
    for c in cfgs:
        c.validate(workers=a.workers)
    runs = []
    with Cluster.start(workers=a.workers, cluster_id=f"cli-{int(time.time() * 1000) % 10**9}", reuse=False) as cluster:
        for c in cfgs:
            runs.append(Run.start(cluster, c).wait(timeout=a.timeout))
    return _emit(runs, a)


def _emit(runs, a) -> int:
    summaries = [r.summary() for r in runs]
    if a.report:
        from .compare import to_html
        to_html(runs, a.report, title="python -m lab " + a.cmd)
    if a.json:
        print(json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=1, default=str))
    else:
        for s in summaries:
            print(format_summary(s))
        if len(runs) > 1:
            from .bench.report import format_table
            from .compare import table
            print(format_table(table(runs)))
        print(f"saved under {runs[0].path.parent}/" + (f"; report {a.report}" if a.report else ""))
    return 0


def cmd_bench(a) -> int:
    from .bench import BENCHMARKS, load_all
    from .bench.report import print_result
    load_all()
    fn = BENCHMARKS.get(a.name)
    t0 = time.time()
    result = fn(quick=a.quick)
    result.setdefault("name", a.name)
    result["seconds"] = time.time() - t0
    print_result(result, as_json=a.json)
    return 0


def cmd_runs(a) -> int:
    from .runs import list_runs, load_run
    for p in list_runs(a.runs_dir):
        print(repr(load_run(p)))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="train one configuration on a fresh local cluster")
    _add_run_args(p)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("compare", help="train several strategies one after another and compare")
    p.add_argument("--strategies", type=str, default="sync,async", help="comma-separated strategy names")
    _add_run_args(p, multi=True)
    p.set_defaults(fn=cmd_compare)
    p = sub.add_parser("bench", help="print side-by-side measurements")
    p.add_argument("name", help="sync-vs-ddp, stragglers, ps-load, compression, agents, ...")
    p.add_argument("--quick", action="store_true", help="a smaller budget (for CI)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_bench)
    p = sub.add_parser("runs", help="list saved runs")
    p.add_argument("--runs-dir", default="runs")
    p.set_defaults(fn=cmd_runs)
    a = ap.parse_args(argv)
    try:
        return a.fn(a)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
