"""Benchmarks judge themselves, run in CI (quick), and BENCHMARKS.md is what the saved results render.

Every registered bench runs here with `--quick` (a subprocess, as a user runs it): exit 0 means
every target a quick run can keep honest (byte ratios, accuracy floors) was met; timing targets
are in the JSON with their spread but not judged. Quick budgets are sized so all of them together
take a few minutes on the 2-core CI machine (see `QUICK_LIMIT_S`).
"""
import json
import math
import os
import subprocess
import sys
import threading
import time

import pytest

from lab import cli
from lab.bench import BENCHMARKS, benchmark, load_all
from lab.bench import results as results_mod
from lab.bench.render import DOC, names, render
from lab.bench.targets import Target, judge, spread

load_all()
QUICK_LIMIT_S = 600  # one quick bench; together they take a few minutes (see BENCHMARKS.md's intro)
PROVENANCE = ("date", "machine", "commit", "packages", "command", "load_average")


def test_a_target_is_met_missed_or_not_judged():
    assert Target("bytes", 50.03, ">=", 50).met
    assert not Target("bytes", 49.9, ">=", 50).met
    assert Target("ssp", 1.2, "between", (1.0, 1.6)).met and not Target("ssp", 1.7, "between", (1.0, 1.6)).met
    assert not Target("never reached", None, "<=", 10).met
    assert not Target("nan", float("nan"), ">=", 0).met
    timing = Target("speed-up", 1.2, ">=", 1.5, noisy=True, spread=spread([1.1, 1.2, 1.4]))
    assert judge([timing], quick=True) and not judge([timing], quick=False)
    assert "[missed]" in timing.line(quick=True) and "not judged" in timing.line(quick=True)
    assert "[MISSED]" in timing.line(quick=False)
    assert "median 1.2 (min 1.1, max 1.4, n=3)" in timing.line(quick=False)
    with pytest.raises(ValueError):
        Target("x", 1, "=>", 1)


@pytest.fixture
def fake_bench():
    """Register a bench whose figures the test chooses; unregistered afterwards."""
    made = []

    def make(name, *targets):
        benchmark(name)(lambda quick=False: {"table": [{"variant": "a", "x": 1.5}], "targets": list(targets)})
        made.append(name)

    yield make
    for name in made:
        BENCHMARKS._table.pop(name, None)


@pytest.mark.skipif(results_mod.Runnable.now() is None, reason="no /proc/stat (not Linux): nothing to sample")
def test_runnable_counts_a_busy_process_and_not_the_sampler():
    """`bench scaling`'s 'runnable threads': one spinning process is one more runnable thread."""
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 5: pass"])
    try:
        time.sleep(0.3)   # started and spinning
        with results_mod.Runnable(every=0.002) as load:
            time.sleep(0.3)
    finally:
        busy.kill()
        busy.wait()
    assert len(load.samples) > 20 and load.mean >= 0.9, load.samples[:20]



def test_core_waits_divide_the_named_threads_wait_by_their_runs(tmp_path):
    """`bench scaling`'s 'comm thread core wait': from each thread's schedstat (run, waited, runs)
    at the start and end of a block, the named threads' wait per run; others and the unnamed ignored."""
    def write(tid, name, waited, runs):
        task = tmp_path / "7" / "task" / str(tid)
        task.mkdir(parents=True, exist_ok=True)
        (task / "comm").write_text(name + "\n")
        (task / "schedstat").write_text(f"123 {waited} {runs}\n")
    write(1, "python", 0, 0)
    write(2, "gloo_tcp_loop", 1_000_000, 10)
    waits = results_mod.CoreWaits([7, 8], proc=str(tmp_path))   # (pid 8: gone, skipped)
    with waits:
        write(1, "python", 9_000_000_000, 5)               # not a communication thread
        write(2, "gloo_tcp_loop", 5_000_000, 30)           # +4 ms over +20 runs
        write(3, "pt_gloo_runloop", 2_000_000, 20)         # born during the block: +2 ms over 20 runs
    assert waits.per_wake_s() == pytest.approx(6e-3 / 40)
    assert waits.per_wake_s(("python",)) == pytest.approx(9.0 / 5)
    assert waits.per_wake_s(("nothing",)) is None
    if os.path.exists(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/schedstat"):   # the real file parses
        with results_mod.CoreWaits([os.getpid()]) as live:
            time.sleep(0.01)
        assert live.per_wake_s((live.end[(os.getpid(), str(threading.get_native_id()))][0],)) is not None

def test_scaling_probe_computes_before_each_collective_and_times_only_the_collective(tmp_path):
    """`bench scaling`'s "after compute" column: `probe(work_s=...)` spends that much CPU before each
    collective, and what it returns is the collective's time, not the compute's."""
    code = f"""
import time, torch.distributed as dist
dist.init_process_group("gloo", init_method="file://{tmp_path / 'store'}", rank=0, world_size=1)
from lab.bench.scaling import probe
c0 = time.thread_time()
plain = probe(4096, 3, gather=True)
c1 = time.thread_time()
after = probe(4096, 3, gather=True, work_s=0.1)
c2 = time.thread_time()
print(plain, after, c1 - c0, c2 - c1)
dist.destroy_process_group()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    plain, after, cpu_plain, cpu_after = map(float, out.stdout.split()[-4:])
    assert cpu_after >= 3 * 0.1 > cpu_plain, (cpu_plain, cpu_after)
    assert after < 0.05 and plain < 0.05, (plain, after)   # the collective alone, without the compute


def test_scaling_row_judges_the_busiest_rank_by_its_mean_and_shows_its_median_and_slow_tenth(tmp_path):
    """`bench scaling`'s comm columns come from the rank with the most comm time, after warm-up: its
    mean (what the model is judged on), median and 90th percentile (a few stalled steps lift the
    mean above the median: the p90 shows them); the host note carries all three."""
    import numpy
    from types import SimpleNamespace
    from lab.bench.scaling import _host_note, base_config, measure
    from lab.costmodel import AlphaBeta
    cfg = base_config(20, str(tmp_path))
    slow = [0.001] * 16 + [0.004, 0.004, 0.010, 0.020]   # rank 1, steps 1..20: four stalled steps
    recs = [{"rank": r, "step": s, "comm_s": slow[s - 1] if r else 0.0005, "compute_s": 0.003, "wait_s": 0.0,
             "n": 32, "step_s": 0.005, "t": 0.005 * s} for r in (0, 1) for s in range(1, 21)]
    run = SimpleNamespace(workers=2, cfg=cfg, records=recs, final=lambda k: 0.9, time_to=lambda k, v: None,
                          wire=lambda: {"nodes": [{"node": f"worker{r}", "wire_per_step": 100.0} for r in (0, 1)]})
    row = measure(run, AlphaBeta(alpha_s=1e-4, beta_Bps=12.5e6), model_bytes=1000)
    timed = slow[1:]   # after warm-up (steps >= 2)
    assert row["comm s/step measured"] == pytest.approx(sum(timed) / len(timed))
    assert row["comm s/step median"] == pytest.approx(0.001)
    assert row["comm s/step p90"] == pytest.approx(numpy.percentile(timed, 90)) and row["comm s/step p90"] > 0.004
    row |= {"network": "net", "variant": "v", "workers": 2, "isolated collective s": 0.0008,
            "after compute collective s": 0.0009}
    note = _host_note([row])
    assert "in training (median) 1.0 (p90 " in note and f"mean {row['comm s/step measured'] * 1e3:.1f})" in note


def test_host_probe_script_gathers_every_block_by_each_algorithm():
    """scripts/host-probe.py (issue 15's leads): ring, all-to-all, point-to-point and recursive doubling
    each put every rank's block in its place (it prints WRONG RESULT otherwise), after sleep and after
    compute; an unknown algorithm is a one-line error."""
    script = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts", "host-probe.py")
    out = subprocess.run([sys.executable, script, "--workers", "2", "--reps", "3", "--work-ms", "1",
                          "--algos", "ring,a2a,p2p,rd"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if "median" in line]
    assert len(rows) == 8 and not any("WRONG" in line for line in rows), out.stdout
    bad = subprocess.run([sys.executable, script, "--algos", "ring,tree"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--algos" in bad.stderr.strip().splitlines()[-1], bad.stderr


def test_stall_probe_script_trains_the_top_k_row_with_each_suspect_switched():
    """scripts/stall-probe.py (issue 15's leads; lab.affinity's figures): one short run with every
    option switched prints the busiest rank's comm figures; a bad option is a one-line error."""
    script = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts", "stall-probe.py")
    out = subprocess.run([sys.executable, script, "--workers", "2", "--runs", "1", "--steps", "30", "--poll-s", "0.5",
                          "--switch-ms", "1", "--controller-session", "same", "--pin", "off"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("run 0 (pin off):")]
    assert "median" in line and "p90" in line and line.endswith("samples/s"), line
    counts = [int(k) for k in line.split("steps by whole ms ")[1].split(";")[0].replace(",", "").split()[1::2]]
    assert sum(counts) == 27, line   # the busiest rank's steps after warm-up (3 of 30)
    for wrong, knob in ((["--workers", "1"], "--workers"), (["--variant", "gossip"], "--variant"),
                        (["--pin", "on,all"], "--pin")):
        bad = subprocess.run([sys.executable, script, *wrong], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and knob in bad.stderr.strip().splitlines()[-1], bad.stderr


def test_bench_exits_1_on_a_missed_target_and_saves_its_json(fake_bench, tmp_path, capsys):
    fake_bench("_t_miss", Target("payload ratio", 40.0, ">=", 50), Target("timing", 0.9, ">=", 0.95, noisy=True))
    assert cli.main(["bench", "_t_miss", "--out", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "[MISSED] payload ratio: 40 (target >= 50)" in out and "payload ratio" in err
    saved = json.loads((tmp_path / "_t_miss.json").read_text())
    assert saved["passed"] is False and saved["quick"] is False and all(k in saved for k in PROVENANCE)
    assert saved["load_during"]["samples"] >= 2 and saved["load_during"]["max"] >= saved["load_during"]["min"] >= 0
    assert [(t["name"], t["met"], t["judged"]) for t in saved["targets"]] == [("payload ratio", False, True),
                                                                              ("timing", False, True)]


def test_quick_run_reports_noisy_targets_without_failing_and_saves_nothing_by_default(fake_bench, tmp_path,
                                                                                         monkeypatch, capsys):
    monkeypatch.setattr(results_mod, "RESULTS", tmp_path / "results")
    fake_bench("_t_noisy", Target("bytes", 50.03, ">=", 50), Target("timing", 0.9, ">=", 0.95, noisy=True))
    assert cli.main(["bench", "_t_noisy", "--quick"]) == 0
    assert "reported, not judged" in capsys.readouterr().out
    assert not (tmp_path / "results").exists()   # a quick run never lands where the full results live
    assert cli.main(["bench", "_t_noisy"]) == 1  # the same figures in a full run: the timing target counts
    assert json.loads((tmp_path / "results" / "_t_noisy.json").read_text())["passed"] is False
    assert cli.main(["bench", "_t_noisy", "--quick", "--out", str(tmp_path / "results")]) == 2  # not even asked


def test_bench_without_a_name_is_one_line(capsys):
    assert cli.main(["bench"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: bench NAME must be one of") and "\n" not in err


def test_benchmarks_md_is_what_the_saved_results_render():
    text = DOC.read_text()
    assert render(text) == text, "BENCHMARKS.md differs from its rendering: run `python -m lab bench --report`"
    assert sorted(names(text)) == BENCHMARKS.names(), "every bench has one block in BENCHMARKS.md, and only benches"


def test_saved_results_are_full_runs_with_provenance():
    for path in sorted(results_mod.RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        assert r["name"] == path.stem and r["quick"] is False, path
        assert all(r.get(k) for k in PROVENANCE), f"{path}: missing provenance"
        assert r["command"] == f"python -m lab bench {r['name']}"
        assert isinstance(r["table"], list) and r["table"], path


def test_render_marks_a_bench_without_saved_result_not_measured(tmp_path):
    text = "x\n<!-- bench nope -->\nold figure 1.23\n<!-- /bench nope -->\ny\n"
    out = render(text, tmp_path)
    assert "1.23" not in out and "Not measured" in out and out.startswith("x\n") and out.endswith("y\n")


def test_render_shows_a_saved_result_with_its_provenance_and_targets(tmp_path):
    t = Target("payload ratio", 50.03, ">=", 50)
    results_mod.save({"name": "b", "quick": False, "table": [{"variant": "topk", "ratio": 50.03}],
                      "targets": [t.to_dict(quick=False)], "seconds": 12.0} | results_mod.provenance("python -m lab bench b"),
                     tmp_path)
    out = render("<!-- bench b -->\n<!-- /bench b -->\n", tmp_path)
    assert "`python -m lab bench b`" in out and "| topk    | 50.03 |" in out
    assert "- [met] payload ratio: 50.03 (target >= 50)" in out and render(out, tmp_path) == out


@pytest.mark.parametrize("name", BENCHMARKS.names())
def test_every_bench_quick(name, tmp_path):
    needs = getattr(BENCHMARKS.get(name), "needs", None)
    why = needs() if needs else None
    if why and os.environ.get("CI") == "true":   # CI (root) never hides a bench
        pytest.fail(f"CI=true but bench {name} cannot run: {why}", pytrace=False)
    elif why:
        pytest.skip(why)
    t0 = time.time()
    out = subprocess.run([sys.executable, "-m", "lab", "bench", name, "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=QUICK_LIMIT_S, env=os.environ)
    took = time.time() - t0
    print(f"bench {name} --quick: {took:.0f} s\n{out.stdout[-3000:]}")
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    r = json.loads((tmp_path / f"{name}.json").read_text())
    assert r["name"] == name and r["quick"] is True and r["passed"] is True
    assert all(r.get(k) for k in PROVENANCE) and r["command"].endswith("--quick")
    assert isinstance(r["table"], list) and r["table"] and r["targets"], "a bench declares at least one target"
    for t in r["targets"]:
        assert {"name", "value", "op", "threshold", "noisy", "met", "judged"} <= set(t)
        assert t["judged"] is not t["noisy"]
        assert t["met"] or not t["judged"]
        assert f"{t['name']}" in out.stdout   # printed, met or missed


def test_links_crossover_is_bracketed_and_interpolated_on_log_rate():
    from lab.bench.links import crossover
    # sooner at 10 (by 20 s), later at 1000 (by 20 s): equal halfway on log(rate), at 100 Mbit/s
    assert crossover({10: (10.0, 30.0), 1000: (30.0, 10.0)}) == pytest.approx(100.0)
    assert crossover({10: (10.0, 30.0), 100: (5.0, 20.0), 1000: (4.0, 14.0)}) == math.inf   # always sooner
    assert crossover({10: (40.0, 30.0), 1000: (30.0, 10.0)}) == 0.0                          # never
    assert crossover({10: (None, 30.0)}) is None                                              # never reached 95%
    # a three-rate bracket: the sign changes between 100 and 1000 only
    x = crossover({10: (10.0, 30.0), 100: (10.0, 12.0), 1000: (10.0, 4.0)})   # -2 s, then +6 s
    assert 100 < x < 1000 and x == pytest.approx(10 ** 2.25)
