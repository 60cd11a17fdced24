"""The byte ledger against the bytes gloo really puts on the wire (chapter 07, issue 4).

Method. Loopback's interface counters (`/sys/class/net/lo/statistics/tx_bytes`) also count
ipyparallel's own messages and every other process on the machine, so they are not used.
Instead the test reads the kernel's per-socket TCP counters (`ss -tinp`, i.e. `tcp_info`'s
`bytes_acked` / `bytes_received`) for the workers' gloo connections only, before and after
one short run, and compares their growth with the run's ledger (the sum of `bytes_sent`
over every worker's every step).

Which sockets: established TCP sockets owned by an engine process whose peer is another
socket owned by an engine process (worker-to-worker), minus the rendezvous store's
connections (rank 0's store port). That leaves gloo's pairs, which carry the collectives and
nothing else. `bytes_acked` counts TCP payload (application bytes), not IP/TCP headers, so it
is compared with payload bytes.

What was measured (2 ranks; 4 ranks in the same micro-benchmark): the ledger's algorithm
formulas are right (gloo's all-reduce is a ring, 2 (n-1)/n B per rank; all-gather (n-1) B),
and on top gloo frames every message: ~290 B per message the ledger counts, plus ~147 B per
barrier round (the ledger counts barriers as waiting, not bytes). So a payload-dominated run
(fp32 sync: +0.3%; top-k 1%, all its layers' payloads in one all-gather a step: +7%) matches the
ledger within 10%, while a payload-light one split over many messages (powersgd: two all-reduces
of a few hundred bytes per layer) carries about twice the ledger on the wire. Every case
matches the ledger plus that framing within 10% (in practice within 1%).

Needs `ss` (iproute2) and a kernel that reports `bytes_acked` (Linux >= 4.1); no root needed,
since the engines are this user's processes. Skips with the reason otherwise.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from lab import sockets
from lab.config import RunConfig

STEPS = 60
TOLERANCE = 0.10


def tcp_sockets(pids) -> dict:
    return sockets.tcp_sockets(pids)


def gloo_sockets(socks: dict, store_port: int) -> dict:
    """Worker-to-worker sockets that are not the rendezvous store's: gloo's pairs (lab.sockets)."""
    return sockets.worker_pairs(socks, store_port)


_delta = sockets.delta


@pytest.fixture(scope="module")
def wire_cluster(cluster_factory):
    why = sockets.why_not()
    if why:
        if os.environ.get("CI") == "true":  # CI never hides this test
            pytest.fail(f"CI=true but {why} (scripts/test.sh does as root)", pytrace=False)
        pytest.skip(why)
    cluster = cluster_factory(2)
    pids = set(cluster.pids)
    store_port = cluster.call(0, "store_port", timeout=30)
    socks = gloo_sockets(tcp_sockets(pids), store_port)
    if not socks:
        pytest.skip("no gloo worker-to-worker TCP sockets visible to `ss -tinp` (needs permission to see the engines)")
    out = subprocess.run(["ss", "-tinH", "state", "established"], capture_output=True, text=True).stdout
    if "bytes_acked" not in out and "bytes_received" not in out:
        pytest.skip("this kernel's tcp_info has no bytes_acked / bytes_received counters")
    return cluster, pids, store_port


def measure(cluster, pids, store_port, cfg) -> dict:
    """Run `cfg` and return the ledger's and the wire's byte totals, with the run."""
    before = gloo_sockets(tcp_sockets(pids), store_port)
    run = cluster.train(cfg).wait(timeout=180)
    after = gloo_sockets(tcp_sockets(pids), store_port)
    return {"run": run, "sockets": len(after),
            "ledger_sent": sum(r["bytes_sent"] for r in run.records),
            "ledger_recv": sum(r["bytes_recv"] for r in run.records),
            "messages": sum(r["messages"] for r in run.records),
            "framing": sum(r["framing_bytes"] for r in run.records),
            "wire_sent": _delta(before, after, "acked"), "wire_recv": _delta(before, after, "received")}


def with_framing(m: dict) -> int:
    """The ledger's algorithm bytes plus its estimate of gloo's framing (lab.comm.FRAMING)."""
    return m["ledger_sent"] + m["framing"]


CASES = {
    # plain fp32 sync: one ring all-reduce of the whole flat gradient (one bucket) per step
    "sync fp32": ({}, True),
    # fp16 per layer: each layer compressed on its own, the half-size payloads in one all-reduce a step
    "fp16 per layer": ({"compressor": "fp16"}, True),
    # payload-light: a few KB a step in two all-reduces per layer, so gloo's fixed ~290 B a message
    # is as big as the payload
    "powersgd rank 2": ({"compressor": "powersgd", "rank": 2, "error_feedback": True}, False),
    # a few KB a step too, but every layer's values and indices in one all-gather: framing ~7%
    "topk 1% (all-gather)": ({"compressor": "topk", "ratio": 0.01, "error_feedback": True}, True),
}


def _run_case(wire_cluster, runs_dir, case) -> dict:
    cluster, pids, store_port = wire_cluster
    cfg = RunConfig(steps=STEPS, eval_every=STEPS, runs_dir=runs_dir).replace(**CASES[case][0])
    m = measure(cluster, pids, store_port, cfg)
    print(f"\n{case}: ledger {m['ledger_sent']} B, wire (TCP payload) {m['wire_sent']} B sent / "
          f"{m['wire_recv']} B received over {m['sockets']} gloo sockets; wire/ledger "
          f"{m['wire_sent'] / m['ledger_sent']:.4f}; wire/(ledger + framing) {m['wire_sent'] / with_framing(m):.4f}; "
          f"{m['messages']} ledger messages")
    assert m["sockets"] >= 2, "expected at least one gloo connection (two sockets) between the workers"
    # every byte sent on loopback is received: the two kernel counters agree
    assert abs(m["wire_sent"] - m["wire_recv"]) <= 0.001 * m["wire_sent"] + 64
    # the ledger's totals are symmetric too (all-reduce and all-gather send what they receive)
    assert m["ledger_sent"] == m["ledger_recv"]
    # never less on the wire than the ledger says went over it
    assert m["wire_sent"] >= m["ledger_sent"]
    return m


@pytest.mark.parametrize("case", list(CASES))
def test_ledger_plus_gloo_framing_matches_the_wire(wire_cluster, runs_dir, case):
    m = _run_case(wire_cluster, runs_dir, case)
    expected = with_framing(m)
    assert abs(m["wire_sent"] - expected) <= TOLERANCE * expected, (m["wire_sent"], expected)
    if CASES[case][1]:  # payload-dominated: the ledger alone is within 10% of the wire
        assert abs(m["wire_sent"] - m["ledger_sent"]) <= TOLERANCE * m["ledger_sent"], (m["wire_sent"], m["ledger_sent"])
    else:  # the ledger alone undercounts: shown here, reported to lab/comm.py's owner
        assert m["wire_sent"] > (1 + TOLERANCE) * m["ledger_sent"]


# Every strategy's published wire figure (RunData.wire: each worker's algorithm bytes plus framing,
# and a hosted parameter server as a node of its own) against the kernel's counters: within 5%.
# Before the server was a node of its own, async's figure was about half of what the wire carried.
STRATEGY_CASES = {
    "sync": {},
    "ps": {"strategy": "ps"},
    "async": {"strategy": "async"},
    "ssp": {"strategy": "ssp", "strategy.staleness": 2},
    "local H=4": {"strategy": "local", "strategy.period": 4},
    "async + topk 1%": {"strategy": "compressed", "base": "async", "compressor": "topk", "ratio": 0.01,
                        "error_feedback": True},
}


@pytest.mark.parametrize("case", list(STRATEGY_CASES))
def test_every_strategys_wire_figure_matches_the_kernels_counters(wire_cluster, runs_dir, case):
    cluster, pids, store_port = wire_cluster
    cfg = RunConfig(steps=STEPS, eval_every=STEPS, runs_dir=runs_dir).replace(**STRATEGY_CASES[case])
    m = measure(cluster, pids, store_port, cfg)
    wire = m["run"].wire()
    print(f"\n{case}: published {wire['total']} B on the wire ({', '.join(n['node'] for n in wire['nodes'])}), "
          f"kernel {m['wire_sent']} B; ratio {m['wire_sent'] / wire['total']:.4f}")
    assert abs(m["wire_sent"] - wire["total"]) <= 0.05 * m["wire_sent"], (m["wire_sent"], wire)
    if case.startswith("async"):
        assert any(n["node"].startswith("server") for n in wire["nodes"]), wire["nodes"]
