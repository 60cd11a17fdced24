"""lab.comm's scatter, gather, ring reduce-scatter (chapter 03b) and direct all-gather: right results, ledger = formula.

Three local processes in one gloo group (lab.procs): three, not two, so the ring's direction and
chunk order matter and an uneven split (7 elements in 3 chunks) is exercised. The formulas are
written out here independently of lab/comm.py (tests/test_wire_bytes.py compares the ledger with
the bytes on the wire for the training strategies).
"""
import pytest
import torch

from lab.procs import Group

WORLD = 3


@pytest.fixture(scope="module")
def group():
    with Group(WORLD, timeout=90) as g:
        yield g


def _ledger(comm):
    lg = comm.ledger.as_dict()
    return {k: lg[k] for k in ("bytes_sent", "bytes_recv", "messages")}


def scatter_gather_job(rank, world):
    from lab.comm import Comm
    comm = Comm(rank, world)
    out = torch.empty(4, dtype=torch.float64)
    chunks = [torch.arange(4, dtype=torch.float64) + 10 * r for r in range(world)] if rank == 1 else None
    got = comm.scatter(out, chunks, src=1).clone()
    scatter = _ledger(comm)
    comm.ledger.reset()
    gathered = comm.gather(torch.full((2,), float(rank)), dst=2)
    return {"scatter": got, "scatter_ledger": scatter, "gathered": gathered, "gather_ledger": _ledger(comm)}


def reduce_scatter_job(rank, world, numel):
    from lab.comm import Comm
    comm = Comm(rank, world)
    t = torch.arange(numel, dtype=torch.float64) * (rank + 1)
    before = t.clone()
    mine = comm.reduce_scatter(t)
    return {"mine": mine, "ledger": _ledger(comm), "untouched": torch.equal(t, before)}


def bad_scatter_job(rank, world):
    from lab.comm import Comm
    from lab.errors import ConfigError
    comm = Comm(rank, world)
    try:
        comm.scatter(torch.empty(2), [torch.ones(2)] * (world - 1), src=rank)  # every rank is its own root: no traffic
    except ConfigError as e:
        return str(e)
    return None


DTYPES = (torch.float32, torch.float16, torch.int64, torch.int32, torch.uint8, torch.bool)


def all_gather_job(rank, world):
    """Comm.all_gather (a direct exchange on gloo) against torch's ring all-gather, every payload dtype."""
    import torch.distributed as dist
    from lab.comm import Comm
    comm = Comm(rank, world)
    out = {}
    for dt in DTYPES:
        t = (torch.arange(6).reshape(2, 3) * (rank + 1) % 5 > 1) if dt == torch.bool else \
            (torch.arange(6).reshape(2, 3) + 10 * rank).to(dt)
        ref = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(ref, t)
        comm.ledger.reset()
        got = comm.all_gather(t)
        out[str(dt)] = (all(torch.equal(g, r) and g.dtype == dt for g, r in zip(got, ref)), _ledger(comm),
                        t.numel() * t.element_size())
    return out


def test_all_gather_matches_torchs_for_every_dtype_and_charges_the_formula(group):
    for rank_out in group.run(all_gather_job):
        for dt, (same, ledger, b) in rank_out.items():
            assert same, dt
            assert ledger == {"bytes_sent": (WORLD - 1) * b, "bytes_recv": (WORLD - 1) * b, "messages": WORLD - 1}, dt


def test_scatter_and_gather_move_the_right_chunks_and_charge_the_formula(group):
    outs = group.run(scatter_gather_job)
    b_scatter, b_gather = 4 * 8, 2 * 4  # 4 float64 per chunk; 2 float32 per rank
    for r, o in enumerate(outs):
        assert torch.equal(o["scatter"], torch.arange(4, dtype=torch.float64) + 10 * r)
        root = r == 1  # scatter: the root sends (n-1) b in n-1 messages, the others receive b
        assert o["scatter_ledger"] == {"bytes_sent": (WORLD - 1) * b_scatter if root else 0,
                                       "bytes_recv": 0 if root else b_scatter, "messages": WORLD - 1 if root else 0}
        root = r == 2  # gather: the others send b in one message each, the root receives (n-1) b
        assert o["gather_ledger"] == {"bytes_sent": 0 if root else b_gather,
                                      "bytes_recv": (WORLD - 1) * b_gather if root else 0, "messages": 0 if root else 1}
    assert [g.tolist() for g in outs[2]["gathered"]] == [[float(r)] * 2 for r in range(WORLD)]
    assert outs[0]["gathered"] is None and outs[1]["gathered"] is None


@pytest.mark.parametrize("numel", [6, 7])
def test_ring_reduce_scatter_sums_each_ranks_chunk_and_charges_what_it_sends(group, numel):
    outs = group.run(reduce_scatter_job, numel)
    total = torch.arange(numel, dtype=torch.float64) * sum(r + 1 for r in range(WORLD))
    bounds = torch.linspace(0, numel, WORLD + 1).round().long().tolist()  # lab.ring's chunking
    sizes = [bounds[i + 1] - bounds[i] for i in range(WORLD)]
    for r, o in enumerate(outs):
        assert torch.equal(o["mine"], total[bounds[r]:bounds[r + 1]]), (r, o["mine"], total)
        assert o["untouched"]
        # rank r sends chunks r-1, ..., r-(n-1) (all but its own), receives r-2, ..., r-n (all but r-1's)
        sent = sum(sizes[c] for c in range(WORLD) if c != r) * 8
        recv = sum(sizes[c] for c in range(WORLD) if c != (r - 1) % WORLD) * 8
        assert o["ledger"] == {"bytes_sent": sent, "bytes_recv": recv, "messages": WORLD - 1}
    if numel % WORLD == 0:  # the textbook formula: (n-1)/n * B each way
        B = numel * 8
        assert all(o["ledger"]["bytes_sent"] == (WORLD - 1) / WORLD * B == o["ledger"]["bytes_recv"] for o in outs)


def test_scatter_rejects_a_wrong_number_of_chunks_in_one_line(group):
    msgs = group.run(bad_scatter_job)
    assert all(m and m.startswith("chunks must be a list of 3 tensors") for m in msgs), msgs
