"""Where a small exchange's time goes inside training: `bench scaling`'s top-k row, on its own, with the
suspects of its stalled steps switched one at a time (issue 15; the bench itself does not judge them):

    .venv/bin/python scripts/stall-probe.py --workers 2                          # loopback
    .venv/bin/python scripts/stall-probe.py --workers 2 --hosts                  # 100 Mbit/s shaped links (root)
    .venv/bin/python scripts/stall-probe.py --workers 2 --poll-s 2               # the driver polls 10x less often
    .venv/bin/python scripts/stall-probe.py --workers 2 --switch-ms 0.5          # engines hand the GIL on sooner
    .venv/bin/python scripts/stall-probe.py --workers 2 --controller-session same  # controller in our session
    .venv/bin/python scripts/stall-probe.py --workers 2 --pin off                # engines not pinned to cores
    .venv/bin/python scripts/stall-probe.py --workers 2 --pin on,off --runs 6    # pinned and not, run by run
    .venv/bin/python scripts/stall-probe.py --workers 4 --pin share,off --runs 4 # shared cores, round robin
    .venv/bin/python scripts/stall-probe.py --workers 2 --variant sync           # another row of the bench

Each run trains `sync` with top-k 1% + EF (or --variant, a row of `bench scaling`) on digits with
the bench's recipe, and prints the busiest rank's communication time per step after warm-up (mean,
median, 90th percentile), how many steps took each whole number of ms, and the run's samples/s (as
`bench scaling` counts them): a step's exchange either takes its usual fraction of a ms or waits up
to a scheduler tick for a core. The driver polls every worker's records every --poll-s (`Run.poll`, an ipyparallel request that each engine's main thread answers while training runs in
another thread); --switch-ms sets the engines' `sys.setswitchinterval` (how long a thread waiting
for the GIL lets the holder run); ipyparallel starts its controller in a session of its own (a
scheduling group of its own, `lab.launchers`), --controller-session same keeps it in ours; the lab
pins each engine to a share of the cores of its own where there are enough (`lab.affinity`):
--pin takes modes of `Cluster.start(pin=...)`, on (the default), off or share (round robin past
the core count too), comma-separated: run i uses the (i mod k)-th, re-planned on the same cluster
(side by side in one sitting, as a comparison of timings needs).
"""
from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def set_switch(seconds: float) -> float:
    """Engine side: the GIL's switch interval; returns the one before."""
    import sys
    old = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    return old


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--hosts", action="store_true", help="one host per worker on 100 Mbit/s shaped links (root)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--poll-s", type=float, default=0.2, help="the driver's polling period (bench scaling: 0.2)")
    ap.add_argument("--switch-ms", type=float, default=None, help="engines' GIL switch interval (Python: 5)")
    ap.add_argument("--controller-session", choices=("own", "same"), default="own")
    ap.add_argument("--pin", default="on", help="comma-separated modes of on, off, share (lab.affinity), "
                                                 "one per run in turn")
    ap.add_argument("--variant", default="sync topk 1% + EF", help="a row of bench scaling (its VARIANTS)")
    a = ap.parse_args(argv)
    for name, value, lo in (("--workers", a.workers, 2), ("--steps", a.steps, 20), ("--runs", a.runs, 1)):
        if value < lo:
            ap.error(f"{name}: an integer >= {lo}; got {value}")
    modes = {"on": True, "off": False, "share": "share"}
    pins = a.pin.split(",")
    if not all(p in modes for p in pins):
        ap.error(f"--pin: comma-separated modes of on, off, share; got {a.pin!r}")
    if a.poll_s <= 0 or (a.switch_ms is not None and a.switch_ms <= 0):
        ap.error(f"--poll-s and --switch-ms: a number of seconds / ms > 0; got {a.poll_s}, {a.switch_ms}")
    import ipyparallel.cluster.launcher as ipp_launcher
    from lab.bench.scaling import VARIANTS, base_config, model_inputs
    knobs = dict(VARIANTS).get(a.variant)
    if knobs is None:
        ap.error(f"--variant: one of {', '.join(repr(v) for v, _ in VARIANTS)}; got {a.variant!r}")
    from lab.cluster import Cluster
    from lab.launchers import _PATCH, _SameSessionPopen

    start = ipp_launcher.LocalControllerLauncher.start

    def same_session(self):   # as lab.launchers does for engines
        with _PATCH:
            saved, ipp_launcher.Popen = ipp_launcher.Popen, _SameSessionPopen
            try:
                return start(self)
            finally:
                ipp_launcher.Popen = saved

    if a.controller_session == "same":
        ipp_launcher.LocalControllerLauncher.start = same_session
    kw = {"hosts": a.workers, "link_mbps": 100.0} if a.hosts else {}
    try:
        cid = f"stall-probe-{a.workers}"
        with Cluster.start(workers=a.workers, cluster_id=cid, reuse=False, device="cpu", timeout_s=120,
                           pin=modes[pins[0]], **kw) as c:
            if a.switch_ms is not None:
                c.apply(set_switch, a.switch_ms / 1e3)
            for i in range(a.runs):
                pin = pins[i % len(pins)]
                c.pin_cores(modes[pin])   # the same cluster, its engines re-planned (lab.affinity)
                cfg = base_config(a.steps, tempfile.mkdtemp(prefix="lab-stall-probe-")).replace(
                    **knobs, name=f"stall-probe {i}")
                run = c.train(cfg)
                while not run.done:
                    run.poll()
                    time.sleep(a.poll_s)
                run = run.wait(timeout=600)
                *_, by_rank, busiest = model_inputs(run, 1)
                comm = [r["comm_s"] * 1e3 for r in busiest]
                rate = sum(sum(r["n"] for r in rows) / sum(r["step_s"] for r in rows) for rows in by_rank.values())
                hist = sorted(collections.Counter(int(x) for x in comm).items())
                print(f"run {i} (pin {pin}): comm ms/step mean {statistics.fmean(comm):.2f} median {statistics.median(comm):.2f} "
                      f"p90 {sorted(comm)[int(0.9 * (len(comm) - 1))]:.2f}; steps by whole ms "
                      + ", ".join(f"{ms}: {k}" for ms, k in hist) + f"; {rate:,.0f} samples/s", flush=True)
    finally:
        ipp_launcher.LocalControllerLauncher.start = start
    return 0


if __name__ == "__main__":
    sys.exit(main())
