"""Saved benchmark results: one JSON per bench, with where, when and from what it was measured.

A full run of `python -m lab bench NAME` writes `bench-results/NAME.json` (the latest full run
of each bench: BENCHMARKS.md is rendered from these files, `lab.bench.render`). A quick run
never writes there: it saves only where `--out` says. Each file holds the bench's table,
ratios, targets and raw rounds, plus the date, machine, commit, package versions and command.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .. import provenance as _provenance

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench-results"   # the latest full run per bench, committed with the repo
PACKAGES = ("torch", "numpy", "ipyparallel", "pyzmq", "gymnasium")


def commit() -> str:
    """The checkout's commit, with '+dirty' when tracked files differ from it (`lab.provenance`)."""
    return _provenance.commit(ROOT) or "unknown"


def packages() -> dict:
    return _provenance.packages(PACKAGES)


def provenance(command: str) -> dict:
    """Where and when: the fields every saved result carries besides its figures."""
    from .report import machine
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "load_average": list(os.getloadavg()), "commit": commit(), "packages": packages(),
            "command": command}


class Sampler:
    """One reading of the machine (`read`, the subclass's) taken every `every` seconds on a thread
    while a block runs (`with`); a None reading ends the sampling (nothing there to read)."""

    def __init__(self, every: float, name: str):
        import threading
        self.every, self.samples = every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def read(self):
        raise NotImplementedError

    def take(self) -> bool:
        x = self.read()
        if x is not None:
            self.samples.append(x)
        return x is not None

    def _run(self):
        while not self._stop.wait(self.every) and self.take():
            pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mean(self):
        return sum(self.samples) / len(self.samples) if self.samples else None


class LoadSampler(Sampler):
    """The machine's 1-minute load average sampled every `every` seconds while a bench runs, and at
    its start and end: a timing measured on a busy machine says so (`load_during`: min, mean, max)."""

    def __init__(self, every: float = 10.0):
        super().__init__(every, "lab-bench-load")
        self.take()

    def read(self):
        return os.getloadavg()[0]

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.take()

    def summary(self) -> dict:
        return {"min": min(self.samples), "mean": self.mean, "max": max(self.samples), "samples": len(self.samples)}


class Runnable(Sampler):
    """How many threads the machine had ready to run (on a core or waiting for one), sampled every
    `every` seconds from /proc/stat's `procs_running` less the sampler itself, while a run is timed:
    beside the core count it says whether the cores were oversubscribed, that is whether a thread
    woken by a message (a collective's next hop) had to wait for a core. `mean` is None where the
    kernel does not say (not Linux)."""

    def __init__(self, every: float = 0.005):
        super().__init__(every, "lab-bench-runnable")

    @staticmethod
    def now():
        """Threads runnable right now, the caller not counted (None: no /proc/stat)."""
        try:
            with open("/proc/stat") as f:
                for line in f:
                    if line.startswith("procs_running"):
                        return max(0, int(line.split()[1]) - 1)
        except OSError:
            return None
        return None

    def read(self):
        return self.now()


COMM_THREADS = ("gloo", "pt_gloo")   # names of gloo's threads: its socket loop and its work runner


class CoreWaits:
    """How long threads of processes `pids` waited for a core each time they were woken: the kernel's
    per-thread scheduler statistics (`/proc/PID/task/TID/schedstat`: time run, time waited on a run
    queue, times run) read when a block starts and when it ends (`with`). `per_wake_s(prefixes)`:
    the wait per run of the threads whose names start with one of `prefixes` (by default gloo's,
    `COMM_THREADS`: each run of those is a message's wake-up), None where the kernel does not say.
    Beside the cost model's alpha, fitted with the cores free, it says what a hop of a collective
    waited under the row's load (`bench scaling`)."""

    def __init__(self, pids, proc: str = "/proc"):
        self.pids, self.proc = list(pids), Path(proc)
        self.start, self.end = {}, {}

    def read(self) -> dict:
        """{(pid, tid): (name, ns waited, runs)} for every thread of `pids` now."""
        out = {}
        for pid in self.pids:
            try:
                tids = os.listdir(self.proc / str(pid) / "task")
            except OSError:
                continue
            for tid in tids:
                task = self.proc / str(pid) / "task" / tid
                try:
                    name = (task / "comm").read_text().strip()
                    _, waited, runs = (int(x) for x in (task / "schedstat").read_text().split()[:3])
                except (OSError, ValueError):
                    continue
                out[(pid, tid)] = (name, waited, runs)
        return out

    def __enter__(self):
        self.start = self.read()
        return self

    def __exit__(self, *exc):
        self.end = self.read()

    def per_wake_s(self, prefixes=COMM_THREADS):
        """Seconds waited for a core per run, over the block, of the threads named `prefixes*`
        (a thread born during the block counts from zero; one gone before its end is not counted)."""
        waited = runs = 0
        for key, (name, w1, r1) in self.end.items():
            if name.startswith(tuple(prefixes)):
                _, w0, r0 = self.start.get(key, (name, 0, 0))
                waited, runs = waited + w1 - w0, runs + r1 - r0
        return waited / runs / 1e9 if runs > 0 else None


def save(result: dict, folder) -> Path:
    """Write `result` as `folder/NAME.json`; returns the path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result['name']}.json"
    path.write_text(json.dumps(result, indent=1, default=str, allow_nan=True) + "\n")
    return path


def load(name: str, folder=RESULTS):
    """The saved result of bench `name`, or None."""
    path = Path(folder) / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None
