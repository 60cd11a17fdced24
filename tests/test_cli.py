"""The command line: `python -m lab run / compare / bench`, with one-line errors for bad knobs."""
import json
import os
import subprocess
import sys


def lab(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ)


def test_run_prints_summary_saves_run_and_report(tmp_path):
    out = lab("run", "--strategy", "sync", "--workers", "2", "--model", "cnn", "--data", "digits",
              "--steps", "60", "--json", "--runs-dir", str(tmp_path / "runs"), "--report", str(tmp_path / "r.html"))
    assert out.returncode == 0, out.stderr[-3000:]
    s = json.loads(out.stdout)
    assert s["steps"] == 60 and s["workers"] == 2 and 0 < s["test_acc"] <= 1
    assert set(s["per_worker"]) == {"0", "1"}
    assert all(w["throughput"] > 0 and w["bytes_sent_per_step"] > 0 for w in s["per_worker"].values())
    saved = list((tmp_path / "runs").iterdir())
    assert len(saved) == 1 and (saved[0] / "records.jsonl").exists() and (saved[0] / "config.json").exists()
    html = (tmp_path / "r.html").read_text()
    assert "<html" in html.lower() and "plotly" in html.lower()


def test_human_summary(tmp_path):
    out = lab("run", "--workers", "1", "--steps", "20", "--schedule", "cosine", "--warmup-steps", "5",
              "--runs-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "final test_acc" in out.stdout and "worker 0:" in out.stdout and "samples/s" in out.stdout
    (saved,) = tmp_path.iterdir()
    optim = json.loads((saved / "config.json").read_text())["optim"]
    assert optim["schedule"] == "cosine" and optim["warmup_steps"] == 5


def test_server_strategies_print_the_servers_bytes(tmp_path):
    out = lab("run", "--strategy", "compressed", "--base", "async", "--compressor", "topk", "--error-feedback",
              "--workers", "2", "--steps", "30", "--runs-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    server = [l for l in lines if l.strip().startswith("wire, server (beside worker 0)")]
    worker1 = [l for l in lines if l.strip().startswith("wire, worker 1 ")]
    assert len(server) == 1 and len(worker1) == 1, out.stdout
    sent = lambda line: float(line.split("kB sent/step")[0].split()[-1])  # noqa: E731
    assert sent(server[0]) > 250, server    # the server replies with fp32 parameters (291 kB) ...
    assert 0 < sent(worker1[0]) < 20, worker1  # ... to worker 1's top-k 1% pushes (5.8 kB + framing)
    assert any(l.strip().startswith("wire, every node:") and "B per sample" in l for l in lines), out.stdout


def test_bad_knobs_are_one_line_errors(tmp_path):
    for args, knob in [(["--workers", "0"], "workers"), (["--lr", "-1"], "lr"), (["--strategy", "nope"], "strategy"),
                       (["--model", "resnet"], "model"), (["--slowdown", "1,x"], "slowdown"),
                       (["--schedule", "step"], "schedule")]:
        out = lab("run", *args, "--runs-dir", str(tmp_path), timeout=60)
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {knob} must be"), out.stderr
    assert not (tmp_path / "runs").exists()


def test_unknown_benchmark_is_one_line():
    out = lab("bench", "nope", timeout=60)
    assert out.returncode == 2 and out.stderr.strip().startswith("error: benchmark must be one of")


def test_compare_runs_each_strategy_and_writes_one_report(tmp_path):
    out = lab("compare", "--strategies", "sync,async", "--workers", "2", "--steps", "30",
              "--runs-dir", str(tmp_path / "runs"), "--report", str(tmp_path / "cmp.html"), "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    summaries = json.loads(out.stdout)
    assert [s["strategy"] for s in summaries] == ["sync", "async"]
    assert all(s["steps"] == 30 and s["status"] == "finished" for s in summaries)
    assert len(list((tmp_path / "runs").iterdir())) == 2
    html = (tmp_path / "cmp.html").read_text()
    assert "sync" in html and "async" in html and "plotly" in html.lower()
