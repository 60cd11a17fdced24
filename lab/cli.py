"""Headless use: `python -m lab run | compare | search | bench | runs | knobs | chapters | gallery`.

    python -m lab run --strategy sync --workers 2 --model cnn --data digits --steps 300
    python -m lab run --strategy sync --workers 2 --json
    python -m lab run --from runs/<id>  # repeat a saved run; prints how far the new curve is from the old
    python -m lab compare --strategies sync,async,local --workers 2 --steps 200 --report cmp.html
    python -m lab bench sync-vs-ddp
    python -m lab runs
    python -m lab search --space lr=0.001,0.003,0.01 --space batch_size=16,64 --pruner asha --workers 4
    python -m lab knobs                 # every knob: its flag, config path and what it accepts
    python -m lab chapters fresh 07     # a fresh copy of chapter 07 in work/ (yours kept in work/backups/)
    python -m lab gallery [--quick]     # run every chapter, write static HTML pages with plots to gallery/

A bad knob prints one line naming it and its allowed range, and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from typing import List, Optional

from . import knobs, records
from .config import RunConfig, set_path
from .errors import LabError

def knob_flags():
    """(flag, entry) for every knob of RunConfig, from its declaration (`lab.knobs`): `--lr`, `--ratio`, ..."""
    return [(e.flag, e) for e in knobs.walk(RunConfig)]


def _help(e) -> str:
    return f"{e.knob.help}: {e.allowed()}" + ("; may change mid-run" if e.knob.live else "")


def _add_run_args(p: argparse.ArgumentParser, multi: bool = False):
    p.add_argument("--workers", type=int, default=None, help="number of workers (engines; default 2, or the "
                   "original's with --from)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--report", type=str, default="", help="write an HTML report here")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before giving up on a run")
    knob_args = p.add_argument_group("knobs", "every config knob (python -m lab knobs lists them)")
    for flag, e in knob_flags():
        if multi and e.path == "strategy.name":  # compare takes --strategies
            continue
        if e.base is bool and not e.is_list:  # --error-feedback / --no-error-feedback
            knob_args.add_argument(flag, dest="knob:" + e.path, action=argparse.BooleanOptionalAction, default=None,
                                   help=_help(e))
        else:  # parsed by the knob itself, so a bad value is the knob's one-line error
            knob_args.add_argument(flag, dest="knob:" + e.path, type=str, default=None, metavar=e.short.upper(),
                                   help=_help(e))


def config_from_args(a, base: Optional[RunConfig] = None) -> RunConfig:
    """`base` (default: the defaults) with every knob flag given on the command line applied."""
    cfg = RunConfig() if base is None else RunConfig.from_dict(base.to_dict())
    for _, e in knob_flags():
        v = getattr(a, "knob:" + e.path, None)
        if v is not None:
            set_path(cfg, e.path, v if isinstance(v, bool) else e.parse(v))
    return cfg


def cmd_knobs(a) -> int:
    """List every knob (or the README's Markdown table; `--readme FILE` rewrites that file's table)."""
    table = knobs.markdown_table(RunConfig)
    if a.readme:
        from pathlib import Path
        path = Path(a.readme)
        text = path.read_text()
        new = knobs.replace_section(text, table)
        path.write_text(new)
        print(f"{path}: knob table {'rewritten' if new != text else 'already up to date'}")
    elif a.markdown:
        print(table)
    else:
        for flag, e in knob_flags():
            print(f"{flag:<22} {e.path:<36} {e.allowed()}{'  (live)' if e.knob.live else ''}")
    return 0


def format_summary(s: dict) -> str:
    lines = [f"run {s['id']}  ({s['strategy']}, compressor {s['compressor']}, {s['workers']} workers, "
             f"{s['steps']} steps, {s['status']}, {s['wall_s']:.1f} s)"]
    for k in records.held_out():
        if k in s:
            lines.append(f"  final {k:<10} {s[k]:.4f}")
    from .devices import na
    if s.get("data_plane"):
        lines.append(f"  data plane: {s['data_plane']}")
    for r, w in s["per_worker"].items():
        lines.append(f"  worker {r}: {w['throughput']:8.1f} {s['unit']}/s   "
                     f"{w['bytes_sent_per_step'] / 1e3:9.1f} kB sent/step   {w['bytes_recv_per_step'] / 1e3:9.1f} kB recv/step")
        if "device" in w:  # a GPU's memory and load; n/a on the CPU, never invented
            lines.append(f"    on {w['device']} ({w['device_name']}): memory {na(w['mem_mb'])} MB, "
                         f"peak {na(w['mem_peak_mb'])} MB, utilisation {na(w['util_pct'])} %")
    # the wire by node: algorithm bytes + the transport's framing; a hosted server (async / ssp serve
    # from a thread beside worker 0) is a node of its own; under ps worker 0 *is* the server
    wire = s["wire"]
    for n in wire["nodes"]:
        lines.append(f"  wire, {n['node']:<26} {n['wire_per_step'] / 1e3:9.1f} kB sent/step "
                     f"({n['framing'] / max(1, n['wire']):.0%} framing)")
    lines.append(f"  wire, every node: {wire['per_sample']:.0f} B per {s['unit'].rstrip('s') or 'sample'}")
    for m in s.get("membership", []):   # an elastic run's workers changed (lab.elastic)
        who = (f"worker(s) {m['left']} left" if m["left"] else "") + (f"worker(s) {m['joined']} joined" if m["joined"] else "")
        server = f", the server's state {m['server']}" if m.get("server") else ""
        lines.append(f"  step {m['step']}: {who}, {m['workers']} workers on, {m.get('steps_lost') or 0} step(s) lost"
                     + server)
    return "\n".join(lines)


def _workers(a, default: int = 2) -> int:
    return default if a.workers is None else a.workers


def load_original(a):
    """The saved run `--from` names: a run directory, or a run id under --runs-dir (default runs/)."""
    from pathlib import Path
    from .errors import ConfigError
    from .runs import load_run
    path = Path(a.from_run)
    if not path.is_dir():
        path = Path(getattr(a, "knob:runs_dir", None) or "runs") / a.from_run
    try:
        return load_run(path)
    except ConfigError:
        raise ConfigError("--from", "a saved run directory (runs/<id>, holding config.json) or its id under "
                          "--runs-dir", a.from_run) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError("--from", f"a readable saved run ({type(e).__name__} reading {path})", a.from_run) from None


def cmd_run(a) -> int:
    from .cluster import Cluster
    from .runs import Run
    original = load_original(a) if a.from_run else None
    cfg = config_from_args(a, original.cfg if original else None)
    workers = _workers(a, original.workers if original else 2)
    cfg.validate(workers=workers)
    meta = {"repeat_of": original.id, "repeat_of_path": str(original.path)} if original else None
    with Cluster.start(workers=workers, cluster_id=f"cli-{int(time.time() * 1000) % 10**9}", reuse=False) as cluster:
        run = Run.start(cluster, cfg, command=a.command, meta=meta)
        run.wait(timeout=a.timeout)
    if original is None:
        return _emit([run], a)
    from .compare import curve_distance, format_distance
    d = curve_distance(original, run)
    run.meta["repeat_distance"] = d
    run._save_meta()
    return _emit([run], a, extra={"repeat_of": original.id, "distance": d},
                 note=f"repeat of {original.id}: {format_distance(d)}")


def cmd_compare(a) -> int:
    from .cluster import Cluster
    from .runs import Run
    base = config_from_args(a)
    names = [s.strip() for s in a.strategies.split(",") if s.strip()]
    cfgs = [base.replace(**{"strategy.name": n, "name": n}) for n in names]
    for c in cfgs:
        c.validate(workers=_workers(a))
    runs = []
    with Cluster.start(workers=_workers(a), cluster_id=f"cli-{int(time.time() * 1000) % 10**9}", reuse=False) as cluster:
        for c in cfgs:
            runs.append(Run.start(cluster, c, command=a.command).wait(timeout=a.timeout))
    return _emit(runs, a)


def _emit(runs, a, extra: Optional[dict] = None, note: str = "") -> int:
    summaries = [r.summary() for r in runs]
    summaries[0].update(extra or {})
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
        if note:
            print(note)
        print(f"saved under {runs[0].path.parent}/" + (f"; report {a.report}" if a.report else ""))
    return 0


def cmd_bench(a) -> int:
    """Run one bench, print it, judge its targets (exit 1 on a miss), save it; or render BENCHMARKS.md."""
    from .bench import BENCHMARKS, load_all
    from .bench.report import print_result
    from .bench.results import RESULTS, LoadSampler, provenance, save
    from .bench.targets import Target, judge
    from pathlib import Path
    if a.report:
        from .bench.render import DOC, write
        print(f"{DOC.name} {'rewritten' if write() else 'already up to date'} from {RESULTS.name}/")
        return 0
    load_all()
    if not a.name:
        from .errors import ConfigError
        raise ConfigError("bench NAME", "one of " + ", ".join(BENCHMARKS.names()) + " (or --report)", None)
    fn = BENCHMARKS.get(a.name)
    out = a.out or (None if a.quick else RESULTS)  # a quick run never replaces the saved full result
    if a.quick and out and Path(out).resolve() == RESULTS.resolve():
        from .errors import ConfigError
        raise ConfigError("--out", f"a folder other than {RESULTS.name}/ for a --quick run", a.out)
    command = "python -m lab bench " + a.name + (" --quick" if a.quick else "")
    result = {"name": a.name, "quick": a.quick} | provenance(command)
    t0 = time.time()
    with LoadSampler() as load:
        result |= fn(quick=a.quick, **bench_options(fn, a))
    result["seconds"] = time.time() - t0
    result["load_during"] = load.summary()
    targets = [t for t in result.get("targets", []) if isinstance(t, Target)]
    result["targets"] = [t.to_dict(a.quick) for t in targets]
    result["passed"] = judge(targets, a.quick)
    print_result(result, as_json=a.json)
    if out:
        path = save(result, out)
        print(f"saved {path}", file=sys.stderr if a.json else sys.stdout)
    if not result["passed"]:
        missed = [t.name for t in targets if t.counts(a.quick) and not t.met]
        print(f"bench {a.name}: {len(missed)} target(s) missed: {'; '.join(missed)}", file=sys.stderr)
        return 1
    return 0


BENCH_OPTIONS = ("device", "batch", "optimizer")


def bench_options(fn, a) -> dict:
    """The bench options given on the command line, as keyword arguments of the bench that takes them
    (one line for an option this bench does not have)."""
    import inspect
    from .errors import ConfigError
    given = {k: getattr(a, k, None) for k in BENCH_OPTIONS if getattr(a, k, None) is not None}
    takes = inspect.signature(fn).parameters
    for k in given:
        if k not in takes:
            raise ConfigError(f"--{k}", f"left out for bench {a.name} (it has no such option)", given[k])
    return given


def cmd_chapters(a) -> int:
    from . import chapters
    work = a.work or chapters.WORK
    if a.action == "fresh":
        new, backup = chapters.fresh(a.chapter, work)
        print(f"fresh copy: {new}" + (f"; yours is kept as {backup}" if backup else ""))
        return 0
    chapters.jupyter_settings()
    for line in chapters.sync(work):
        print(line)
    return 0


def cmd_gallery(a) -> int:
    from . import gallery
    quick = a.quick or os.environ.get("LAB_QUICK", "") not in ("", "0", "false", "False")
    out = gallery.build(a.out or None, quick=quick, selection=[c for c in a.chapters.split(",") if c] or None)
    print(f"{len(out['pages'])} pages, index: {out['index']}" + (f"; FAILED: {', '.join(out['failed'])}" if out["failed"] else ""))
    return 1 if out["failed"] else 0


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
    p.add_argument("--from", dest="from_run", default="", metavar="RUN",
                   help="repeat a saved run (runs/<id>, or its id under --runs-dir) with its config and worker "
                        "count (other flags override), then print how far the new curve is from the old")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("compare", help="train several strategies one after another and compare")
    p.add_argument("--strategies", type=str, default="sync,async", help="comma-separated strategy names")
    _add_run_args(p, multi=True)
    p.set_defaults(fn=cmd_compare)
    p = sub.add_parser("bench", help="measure side by side and judge the targets (exit 1 on a miss)")
    p.add_argument("name", nargs="?", help="sync-vs-ddp, stragglers, ps-load, compression, agents, ...")
    p.add_argument("--quick", action="store_true",
                   help="a smaller budget (CI): noisy (timing) targets are reported, not judged; nothing saved "
                        "unless --out")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", default=None, help="folder for NAME.json (default: bench-results/ for a full run)")
    p.add_argument("--report", action="store_true", help="render BENCHMARKS.md from the saved results")
    p.add_argument("--device", default=None, help="sync-vs-ddp: cpu, cuda (a GPU per worker), cuda-shared (the "
                   "workers on one GPU) or all (default: cpu, plus GPU rows: measured where a GPU is, else 'not measured')")
    p.add_argument("--batch", default=None, help="sync-vs-ddp: batch size per worker, or several, e.g. 32,128,256")
    p.add_argument("--optimizer", default=None, help="sync-vs-ddp: sgd, momentum or adam (default adam)")
    p.set_defaults(fn=cmd_bench)
    p = sub.add_parser("search", help="hyperparameter search: trials on engine groups at once (grid, random, ASHA)")
    from . import search as _search
    _search.add_args(p, _add_run_args)
    p.set_defaults(fn=lambda a: _search.cmd(a, config_from_args(a), _workers(a)))
    p = sub.add_parser("knobs", help="list every knob: flag, config path, what it accepts")
    p.add_argument("--markdown", action="store_true", help="as the README's Markdown table")
    p.add_argument("--readme", default="", help="rewrite the knob table in this file (between knobs:start/end)")
    p.set_defaults(fn=cmd_knobs)
    p = sub.add_parser("gallery", help="run every chapter and write static HTML pages with their plots (gallery/)")
    p.add_argument("--quick", action="store_true", help="quick mode (also when LAB_QUICK=1): smaller budgets")
    p.add_argument("--out", default="", help="the folder for the pages (default: gallery/ in the project)")
    p.add_argument("--chapters", default="", help="only these chapters, e.g. 00,03b (default: all)")
    p.set_defaults(fn=cmd_gallery)
    p = sub.add_parser("runs", help="list saved runs")
    p.add_argument("--runs-dir", default="runs")
    p.set_defaults(fn=cmd_runs)
    p = sub.add_parser("chapters", help="your copies of the chapters in work/ (what JupyterLab opens)")
    p.add_argument("action", choices=["sync", "fresh"], help="sync: copy missing chapters (never overwrites yours); "
                   "fresh NN: a fresh copy of chapter NN, yours kept in work/backups/")
    p.add_argument("chapter", nargs="?", default="", help="with fresh: the chapter's number, e.g. 07")
    p.add_argument("--work", default="", help="the work folder (default: work/ in the project)")
    p.set_defaults(fn=cmd_chapters)
    a = ap.parse_args(argv)
    a.command = "python -m lab " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        return a.fn(a)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
