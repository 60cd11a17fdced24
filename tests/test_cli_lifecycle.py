"""`python -m lab run` returns only when everything it started has gone; Ctrl-C saves the run as interrupted."""
import json
import os
import signal
import subprocess
import sys
import time

import psutil


def _env(tmp_path):
    # a private IPYTHONDIR marks every process the command starts (engines, nannies, controller
    # inherit it), so what is left can be told from anybody else's processes
    return dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython"))


def _started_by(env) -> list:
    """Live processes (not zombies) whose environment carries this IPYTHONDIR."""
    mark = "IPYTHONDIR"
    left = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        if p.pid == os.getpid() or p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if p.environ().get(mark) == env[mark]:
                left.append((p.pid, " ".join(p.info["cmdline"] or [])[:120]))
        except psutil.Error:
            pass
    return left


def test_run_returns_after_every_process_it_started(tmp_path):
    env = _env(tmp_path)
    out = subprocess.run([sys.executable, "-m", "lab", "run", "--workers", "2", "--steps", "10",
                          "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _started_by(env) == []  # at once: not a few seconds later


def test_ctrl_c_exits_130_leaves_nothing_and_saves_the_run_as_interrupted(tmp_path):
    env, runs = _env(tmp_path), tmp_path / "runs"
    # as in a terminal: SIGINT at its default (a test run started in the background, `cmd &`, ignores it,
    # and an ignored signal is inherited through exec: the CLI would never see this Ctrl-C)
    proc = subprocess.Popen([sys.executable, "-m", "lab", "run", "--workers", "2", "--steps", "100000",
                             "--runs-dir", str(runs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 180
        records = []
        while time.time() < deadline and len(records) < 4:  # a few steps in
            time.sleep(0.5)
            records = list(runs.glob("*/records.jsonl"))
            records = records[0].read_text().splitlines() if records else []
            assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert len(records) >= 4, "the run made no progress"
        proc.send_signal(signal.SIGINT)
        t0 = time.time()
        _, err = proc.communicate(timeout=20)
        took = time.time() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert took < 10, took
    assert _started_by(env) == []
    (saved,) = runs.iterdir()
    meta = json.loads((saved / "meta.json").read_text())
    steps = [json.loads(line)["step"] for line in (saved / "records.jsonl").read_text().splitlines()]
    assert meta["status"] == "interrupted" and meta["last_step"] == max(steps) >= 1
    listed = subprocess.run([sys.executable, "-m", "lab", "runs", "--runs-dir", str(runs)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert listed.returncode == 0 and f"{max(steps) + 1} steps, interrupted" in listed.stdout, listed.stdout
