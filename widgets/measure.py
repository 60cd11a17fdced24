"""What the live dashboard costs: synthetic records at a set rate, fed the way a run feeds them.

`measure_dashboard(workers=8, rate=10)` produces `rate` records a second per worker (stamped with
their production time `wall`), delivers them in polls every `poll_s` seconds like `Run.watch`,
runs the notebook's event loop in between, and returns the dashboard's `stats`: seconds spent
in the dashboard per second of training and the lag from a record's production to its drawing.
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from typing import List


def synthetic_records(workers: int, steps: int, rate: float = 10.0, start: float = 0.0, seed: int = 0,
                      changes_at: dict = None, first: int = 0) -> List[dict]:
    """Plausible records (every field `lab.train` emits) for steps `first`..`steps`-1 of `workers` workers."""
    rng = random.Random(seed)
    out = []
    for step in range(first, steps):
        for rank in range(workers):
            t = start + (step + 1) / rate
            comp, comm = 0.03 * (1 + 0.1 * rank), 0.02
            r = {"rank": rank, "step": step, "t": t, "loss": 2.3 * math.exp(-step / 200) + 0.05 * rng.random(),
                 "n": 32, "unit": "samples", "throughput": 32 / (comp + comm), "step_s": comp + comm,
                 "compute_s": comp, "comm_s": comm, "wait_s": 0.005 * rng.random(), "sim_link_s": 0.0,
                 "bytes_sent": 291368, "bytes_recv": 291368, "payload_bytes": 145684, "raw_bytes": 145684,
                 "compression_ratio": 1.0, "staleness": rng.choice((0, 0, 0, 1, 2)) if rank else 0,
                 "lr": 0.05, "strategy": "sync", "compressor": "none", "messages": 2}
            if rank == 0 and (step + 1) % 25 == 0:
                r["test_acc"] = 1 - 0.9 * math.exp(-step / 150)
            if changes_at and step in changes_at:
                r["changes"] = [changes_at[step]]
            out.append(r)
    return out


async def _feed(dash, workers, rate, seconds, poll_s):
    t0 = time.time()
    step = 0
    total = int(seconds * rate)
    while step < total:
        await asyncio.sleep(poll_s)
        now = time.time()
        upto = min(total, int((now - t0) * rate))
        batch = synthetic_records(workers, upto, rate, seed=step, first=step)
        for r in batch:  # production time: when its step finished
            r["wall"] = t0 + r["t"]
        step = upto
        dash.feed(batch, now=step >= total)
    await asyncio.sleep(2 / dash.max_fps)


def measure_dashboard(workers: int = 8, rate: float = 10.0, seconds: float = 20.0, poll_s: float = 0.25,
                      max_fps: float = 4.0, dashboard=None) -> dict:
    """Feed a dashboard synthetic records in real time; return its `stats` plus the settings."""
    from .dashboard import LiveDashboard
    dash = dashboard or LiveDashboard(max_fps=max_fps)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        raise RuntimeError("call `await ameasure_dashboard(...)` inside a running event loop")
    asyncio.run(_feed(dash, workers, rate, seconds, poll_s))
    return {"workers": workers, "rate_per_worker": rate, "seconds": seconds, "max_fps": dash.max_fps, **dash.stats}


async def ameasure_dashboard(workers: int = 8, rate: float = 10.0, seconds: float = 20.0, poll_s: float = 0.25,
                             max_fps: float = 4.0, dashboard=None) -> dict:
    """`measure_dashboard` for a notebook (its event loop is already running): `await` it."""
    from .dashboard import LiveDashboard
    dash = dashboard or LiveDashboard(max_fps=max_fps)
    await _feed(dash, workers, rate, seconds, poll_s)
    return {"workers": workers, "rate_per_worker": rate, "seconds": seconds, "max_fps": dash.max_fps, **dash.stats}
