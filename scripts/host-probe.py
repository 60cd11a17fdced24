"""A small all-gather on n workers sharing this machine's cores: after sleep or after compute, by three
algorithms, with the engines in one scheduling group or one each. Leads for `bench scaling`'s top-k
rows (issue 15), which the bench itself does not judge:

    .venv/bin/python scripts/host-probe.py --workers 8                 # loopback
    .venv/bin/python scripts/host-probe.py --workers 8 --hosts         # hosts on 100 Mbit/s links (root)
    .venv/bin/python scripts/host-probe.py --workers 8 --own-sessions  # a session per engine (ipyparallel's way)
    .venv/bin/python scripts/host-probe.py --workers 8 --slice-us 0    # the kernel's default scheduler slice
    .venv/bin/python scripts/host-probe.py --workers 8 --one-group     # engines in one cpu cgroup (root, cgroup v1)

Each repetition: every worker sleeps (`sleep`) or computes (`compute`) for --work-ms of its own
time, all meet at a barrier (nobody computes after it), then one all-gather of --bytes is timed:
`ring` (torch's, gloo's ring), `a2a` (`lab.comm.direct_all_gather`, all_to_all_single: one round of
direct sends), `p2p` (the same round by isend / irecv, which gloo runs on the calling thread rather
than its work thread; --algos to pick it) and `rd` (recursive doubling by hand with batch_isend_irecv:
log2 n rounds; n a power of 2).
Prints the slowest rank's median, mean and 90th percentile in ms. The lab starts every engine in
the starting process's session (`lab.launchers`), so Linux's autogroup schedules them as one
group; --own-sessions starts each in a session of its own (one group each, as ipyparallel does);
--one-group puts them all in one cpu cgroup (removed at the end). Every engine thread runs with
the lab's short scheduler slice (`lab.slices`); --slice-us 0 gives them the kernel's default.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CGROUP_ROOT = Path("/sys/fs/cgroup/cpu")   # cgroup v1's cpu controller
ALGOS = ("ring", "a2a", "p2p", "rd")


def probe(mode: str, algo: str, reps: int, nbytes: int, work_ms: float):
    """Engine side: `reps` timed all-gathers; returns (median, mean, p90) seconds and whether every
    rank's block arrived in its place."""
    import time
    import statistics as st
    import torch
    import torch.distributed as dist
    from lab.worker import STATE
    world, rank, ctl = dist.get_world_size(), dist.get_rank(), STATE["control"]
    t = torch.full((max(1, nbytes // 4),), float(rank))
    out = [torch.empty_like(t) for _ in range(world)]
    a = torch.ones(64, 64)

    def rd():
        buf = torch.empty(world, t.numel())
        buf[rank] = t
        d = 1
        while d < world:
            peer, lo = rank ^ d, (rank // d) * d
            got = torch.empty(d, t.numel())
            for w in dist.batch_isend_irecv([dist.P2POp(dist.isend, buf[lo:lo + d].contiguous(), peer),
                                              dist.P2POp(dist.irecv, got, peer)]):
                w.wait()
            buf[(peer // d) * d:(peer // d) * d + d] = got
            d *= 2
        return buf

    def a2a():   # the lab's own (lab.comm: how compressed payloads are gathered on gloo)
        from lab.comm import direct_all_gather
        return direct_all_gather(t, world)

    def p2p():   # the same exchange by point-to-point calls, receives posted first (no work thread)
        buf = torch.empty(world, t.numel())
        buf[rank] = t
        works = [dist.irecv(buf[j], j) for j in range(world) if j != rank]
        works += [dist.isend(t, j) for j in range(world) if j != rank]
        for w in works:
            w.wait()
        return buf

    times, ok = [], True
    for _ in range(reps):
        if mode == "sleep":
            time.sleep(work_ms / 1e3)
        else:
            until = time.thread_time() + work_ms / 1e3
            while time.thread_time() < until:
                a @ a
        dist.barrier(group=ctl)
        t0 = time.perf_counter()
        if algo == "ring":
            dist.all_gather(out, t)
            res = torch.stack(out)
        elif algo == "a2a":
            res = a2a()
        elif algo == "p2p":
            res = p2p()
        else:
            res = rd()
        times.append(time.perf_counter() - t0)
        ok = ok and bool((res[:, 0] == torch.arange(world, dtype=torch.float)).all())
    times.sort()
    return st.median(times), st.fmean(times), times[int(0.9 * (len(times) - 1))], ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--hosts", action="store_true", help="one host per worker on 100 Mbit/s shaped links (root)")
    ap.add_argument("--one-group", action="store_true", help="every engine in one cpu cgroup (root, cgroup v1)")
    ap.add_argument("--own-sessions", action="store_true",
                    help="a session (Linux scheduling group) per engine, as ipyparallel starts them; "
                         "default: the lab's, all in one (lab.launchers)")
    ap.add_argument("--slice-us", type=float, default=None,
                    help="every engine thread's scheduler slice in us (0: the kernel's default); "
                         "default: the lab's (lab.slices.SLICE_US)")
    ap.add_argument("--bytes", type=int, default=6000)
    ap.add_argument("--work-ms", type=float, default=5.0)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--algos", default="ring,a2a,rd", help=f"comma-separated, of {','.join(ALGOS)}")
    a = ap.parse_args(argv)
    algos = a.algos.split(",")
    if not algos or any(x not in ALGOS for x in algos):
        ap.error(f"--algos: a comma-separated list of {', '.join(ALGOS)}; got {a.algos!r}")
    if "rd" in algos and a.workers & (a.workers - 1):
        algos.remove("rd")   # recursive doubling as written here needs a power of 2
    if a.one_group and not (CGROUP_ROOT / "tasks").exists():
        print(f"error: --one-group needs cgroup v1's cpu controller at {CGROUP_ROOT}", file=sys.stderr)
        return 2
    from lab import Cluster
    from lab.launchers import OneSessionEngineLauncher
    OneSessionEngineLauncher.one_session = not a.own_sessions
    kw = {"hosts": a.workers, "link_mbps": 100.0} if a.hosts else {}
    group = CGROUP_ROOT / f"lab-host-probe-{os.getpid()}"
    with Cluster.start(workers=a.workers, cluster_id=f"host-probe-{os.getpid()}", reuse=False, device="cpu",
                       timeout_s=120, **kw) as c:
        try:
            if a.one_group:
                group.mkdir()
                for p in c.pids:
                    (group / "cgroup.procs").write_text(str(p))
            if a.slice_us is not None:
                from lab.slices import set_slice
                took = sum(c.apply(set_slice, a.slice_us))
                print(f"scheduler slice {a.slice_us:g} us (0: the kernel's default) taken by {took} engine threads")
            print(f"{a.workers} workers on {os.cpu_count()} cores, {'hosts' if a.hosts else 'loopback'}"
                  f"{', one cgroup' if a.one_group else ''}{', a session per engine' if a.own_sessions else ''}: all-gather of {a.bytes} B, {a.reps} reps "
                  f"after {a.work_ms:g} ms of sleep or compute (slowest rank, ms)")
            for mode in ("sleep", "compute"):
                for algo in algos:
                    outs = [c.client[e].apply_async(probe, mode, algo, a.reps, a.bytes, a.work_ms) for e in c.engine_ids]
                    r = [o.get(timeout=600) for o in outs]
                    print(f"  {mode:8s} {algo:5s} median {max(x[0] for x in r) * 1e3:6.2f}  mean "
                          f"{max(x[1] for x in r) * 1e3:6.2f}  p90 {max(x[2] for x in r) * 1e3:6.2f}"
                          f"{'' if all(x[3] for x in r) else '  WRONG RESULT'}", flush=True)
        finally:
            if group.exists():
                for p in c.pids:   # back to the root group, then the (empty) group can go
                    try:
                        (CGROUP_ROOT / "cgroup.procs").write_text(str(p))
                    except OSError:
                        pass
                group.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
