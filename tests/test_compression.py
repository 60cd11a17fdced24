"""Gradient compressors, error feedback and the compressed exchange (chapter 07).

Single-process tests use `Comm(0, 1)` (no process group needed). The multi-worker checks run once
per module in two real torch.distributed processes (gloo on loopback, a fresh port, timeouts),
which save their results for the tests below to compare against references.
"""
from __future__ import annotations

import math
import os
import socket
import time
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lab.comm import Comm
from lab.compression import COMPRESSORS
from lab.compression.base import payload_bytes
from lab.compression.exchange import exchange, exchange_many, payload_ratio, payload_ratios
from lab.compression.memory import NoMemory, Residual, build_memory
from lab.compression.signsgd import pack_bits, unpack_bits
from lab.config import CompressionConfig
from lab.errors import ConfigError

NAMES = ["none", "fp16", "bf16", "topk", "randomk", "qsgd", "terngrad", "signsgd", "efsignsgd", "powersgd"]
SHAPES = [(), (7,), (8, 6), (4, 3, 3, 3), (33, 20)]
WORLD = 2
SPAWN_TIMEOUT_S = 90


def build(name, **knobs):
    knobs.setdefault("ratio", 0.1)
    knobs.setdefault("levels", 8)
    return COMPRESSORS.build(name, CompressionConfig(name=name, **knobs))


def roundtrip(comp, x, name="x"):
    return comp.decompress(*comp.compress(x, name))


# -- protocol: every compressor ------------------------------------------------------------------
def test_every_compressor_is_registered():
    assert sorted(NAMES) == COMPRESSORS.names()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_roundtrip_keeps_shape_and_dtype(name, dtype, shape):
    x = torch.randn(shape, dtype=dtype)
    out = roundtrip(build(name), x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_ledger_payload_matches_payload_bytes(name, dtype, shape):
    """What `exchange` hands to the collective is what `payload_bytes` (the benchmark's formula) says."""
    comp, comm = build(name), Comm(0, 1)
    x = torch.randn(shape, dtype=dtype)
    out = exchange(x.clone(), "x", comp, NoMemory(), comm)
    assert out.shape == x.shape and out.dtype == x.dtype
    itemsize = x.element_size()
    assert comm.ledger.payload_bytes == payload_bytes(comp, shape, itemsize)
    assert comm.ledger.raw_bytes == x.numel() * 4


@pytest.mark.parametrize("name,tol,dtype", [("fp16", 2**-11, torch.float16), ("bf16", 2**-8, torch.bfloat16)])
def test_casts_round_within_half_an_ulp(name, tol, dtype):
    """Within half an ulp of the format, relative; below its normal range (fp16's from 6.1e-5 down,
    which 1000 normal draws reach about once in twenty) the step is fixed, and half of it is the bound."""
    x = torch.cat([torch.randn(1000, generator=torch.Generator().manual_seed(0)), torch.tensor([3e-5, -1e-6, 1e-7])])
    out = roundtrip(build(name), x)
    fi = torch.finfo(dtype)
    half_step_below_normal = fi.tiny * fi.eps / 2      # (the smallest normal times 2^-mantissa bits) / 2
    assert ((out - x).abs() <= torch.clamp(x.abs() * tol, min=half_step_below_normal)).all()


# -- unbiasedness and what each compressor keeps --------------------------------------------------
@pytest.mark.parametrize("name", ["randomk", "qsgd", "terngrad"])
def test_stochastic_compressors_are_unbiased(name):
    """Mean of N draws of decompress(compress(x)) is within 5 standard errors of x, entry by entry."""
    torch.manual_seed(0)
    x, n = torch.randn(64, dtype=torch.float64), 4000
    comp = build(name, ratio=0.25, levels=4)
    draws = torch.stack([roundtrip(comp, x) for _ in range(n)])  # randomk: a new seed each step
    stderr = draws.std(0) / math.sqrt(n)
    z = (draws.mean(0) - x).abs() / stderr.clamp_min(1e-12)
    assert z.max() < 5, f"worst entry {z.max():.1f} standard errors from x"
    assert draws.std(0).sum() > 0  # the draws really are random



def test_packed_all_gather_gives_each_rank_its_own_tensors_of_every_dtype_and_shape():
    """`exchange._all_gather_packed` sends a worker's payloads as one byte string and cuts each rank's
    back out, one copy per tensor for all ranks: odd byte counts, a 0-dim tensor, bool and int8
    beside float64 (a typed view needs aligned storage), and one rank or three."""
    from lab.compression.exchange import _all_gather_packed

    def payloads(r):   # rank r's: three payloads, one of two tensors
        return [[torch.arange(3, dtype=torch.int8) + r, torch.tensor(r + 0.5, dtype=torch.float64)],
                [torch.tensor([r % 2 == 0, True, False])], [torch.full((2, 3), float(r), dtype=torch.float32)]]

    def pack(ps):
        return torch.cat([t.reshape(-1).view(torch.uint8) for p in ps for t in p])

    for world in (1, 3):
        fake = type("Fake", (), {"all_gather": lambda self, t: [pack(payloads(r)) for r in range(world)]})()
        got = _all_gather_packed(payloads(0), fake)
        assert len(got) == 3 and all(len(per_rank) == world for per_rank in got)
        for r in range(world):
            for want, have in zip(payloads(r), (got[i][r] for i in range(3))):
                assert all(torch.equal(w, h) and w.dtype == h.dtype and w.shape == h.shape for w, h in zip(want, have))


def test_topk_keeps_the_k_largest():
    x = torch.randn(100)
    out = roundtrip(build("topk", ratio=0.1), x)
    top = set(x.abs().topk(10).indices.tolist())
    assert set(out.nonzero().flatten().tolist()) == top
    assert torch.equal(out[list(top)], x[list(top)])


def test_randomk_draws_the_same_indices_on_every_worker_and_new_ones_each_step():
    a, b = build("randomk"), build("randomk")
    x = torch.randn(200)
    (_, (ia, _)), (_, (ib, _)) = a.compress(x, "w"), b.compress(-x, "w")
    assert torch.equal(ia, ib)                      # same name, same step: same indices
    assert not torch.equal(a.compress(x, "w")[1][0], ia)  # next step: new indices


def test_qsgd_values_lie_on_the_levels():
    x = torch.randn(500, dtype=torch.float64)
    out = roundtrip(build("qsgd", levels=4), x)
    levels = out.abs() / x.norm() * 4
    assert torch.allclose(levels, levels.round(), atol=1e-9) and levels.max() <= 4
    assert (out.sign() * x.sign() >= 0).all()


def test_signsgd_is_the_scaled_sign_in_one_bit_per_entry():
    x = torch.randn(1001)
    comp = build("signsgd")
    payload, ctx = comp.compress(x, "x")
    assert payload[1].numel() == 126  # ceil(1001 / 8) bytes
    expected = torch.where(x >= 0, 1.0, -1.0) * x.abs().mean()
    assert torch.equal(comp.decompress(payload, ctx), expected)
    for n in (1, 7, 8, 9, 100):
        bits = torch.rand(n) < 0.5
        assert torch.equal(unpack_bits(pack_bits(bits), n), bits)


def test_signsgd_majority_vote():
    comp = COMPRESSORS.build("signsgd", CompressionConfig(), majority_vote=True)
    xs = [torch.tensor([1.0, -1.0, 2.0]), torch.tensor([1.0, 3.0, -2.0]), torch.tensor([-3.0, -1.0, 2.0])]
    compressed = [comp.compress(x, "x") for x in xs]
    out = comp.aggregate([p for p, _ in compressed], compressed[0][1])
    scale = sum(x.abs().mean() for x in xs) / 3
    assert torch.allclose(out, torch.tensor([1.0, -1.0, 1.0]) * scale)


def test_powersgd_is_exact_on_a_low_rank_matrix():
    m = torch.randn(20, 2, dtype=torch.float64) @ torch.randn(2, 15, dtype=torch.float64)
    assert torch.allclose(roundtrip(build("powersgd", rank=2), m), m, atol=1e-10)


# -- error feedback -------------------------------------------------------------------------------
def test_residual_is_input_minus_decompressed():
    comp, mem = build("topk"), Residual()
    g1, g2 = torch.randn(50), torch.randn(50)
    c = mem.compensate(g1, "w")
    payload, ctx = comp.compress(c, "w")
    mem.update(c, "w", comp, payload, ctx)
    assert torch.equal(mem.residuals["w"], g1 - comp.decompress(payload, ctx))
    assert torch.equal(mem.compensate(g2, "w"), g2 + mem.residuals["w"])


@pytest.mark.parametrize("name", NAMES)
def test_error_feedback_loses_nothing(name):
    """Over steps, what was sent plus what is still owed equals the sum of the gradients."""
    comp, mem, comm = build(name, ratio=0.05, rank=1), Residual(), Comm(0, 1)
    grads = [torch.randn(12, 10, dtype=torch.float64) for _ in range(5)]
    sent = sum(exchange(g.clone(), "w", comp, mem, comm) for g in grads)
    assert torch.allclose(sent + mem.residuals["w"], sum(grads), atol=1e-10)


def test_efsignsgd_always_has_error_feedback():
    off = CompressionConfig(error_feedback=False)
    assert isinstance(build_memory(off, build("efsignsgd")), Residual)
    assert isinstance(build_memory(off, build("signsgd")), NoMemory)
    assert isinstance(build_memory(CompressionConfig(error_feedback=True), build("topk")), Residual)


def _memory_after_one_topk_step():
    comp, mem = build("topk"), Residual()
    exchange(torch.randn(40), "w", comp, mem, Comm(0, 1))
    return mem, mem.residuals["w"].clone()


def test_switch_keep_and_reset():
    mem, r = _memory_after_one_topk_step()
    mem.on_switch("keep")
    assert torch.equal(mem.residuals["w"], r)
    mem.on_switch("reset")
    assert mem.residuals == {}


def test_switch_flush_sends_the_residual_uncompressed_once():
    mem, r = _memory_after_one_topk_step()
    mem.on_switch("flush")
    comp, comm, g = build("signsgd"), Comm(0, 1), torch.randn(40)
    assert torch.equal(exchange(g.clone(), "w", comp, mem, comm), g + r)
    assert comm.ledger.payload_bytes == 40 * 4 and not mem.residuals["w"].any()
    exchange(g.clone(), "w", comp, mem, comm)  # the next step is compressed again
    assert comm.ledger.payload_bytes == 40 * 4 + payload_bytes(comp, (40,))


# -- bad knobs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("knobs", [
    dict(ratio=0), dict(ratio=1.5), dict(ratio=-0.1), dict(ratio=float("nan")), dict(levels=0),
    dict(levels=2.5), dict(rank=0), dict(name="zip"), dict(scope="bucket"), dict(on_switch="drop"),
], ids=str)
def test_bad_knobs_raise_config_error(knobs):
    with pytest.raises(ConfigError) as err:
        CompressionConfig(**knobs).validate()
    assert next(iter(knobs)) in str(err.value) or "compressor" in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_good_knobs_validate(name):
    CompressionConfig(name=name, ratio=1.0, levels=1, rank=1).validate()


# -- theoretical payload ratios -------------------------------------------------------------------
def test_payload_ratio_formulas():
    cfg = CompressionConfig(ratio=0.01, rank=2)
    assert payload_ratio(COMPRESSORS.build("powersgd", cfg), [(64, 32)]) == 64 * 32 / (2 * (64 + 32))
    assert payload_ratio(COMPRESSORS.build("topk", cfg), [(10000,)]) == 10000 * 4 / (100 * 8)
    assert payload_ratio(COMPRESSORS.build("randomk", cfg), [(10000,)]) == 100
    assert payload_ratio(COMPRESSORS.build("signsgd", cfg), [(8000,)]) == 32000 / (4 + 1000)
    ratios = payload_ratios([(64, 3, 3, 3), (64,), (10, 64)], cfg)
    assert ratios["none"] == 1 and ratios["fp16"] == ratios["bf16"] == 2
    assert sorted(ratios) == sorted(NAMES)


# -- two real workers -----------------------------------------------------------------------------
class _Bucket:
    """Duck-typed `dist.GradBucket` (it has no Python constructor): what powerSGD_hook reads."""

    def __init__(self, grads):
        self.shapes = [g.shape for g in grads]
        self.flat = torch.cat([g.reshape(-1) for g in grads])

    def buffer(self):
        return self.flat

    def gradients(self):
        views, at = [], 0
        for s in self.shapes:
            n = math.prod(s)
            views.append(self.flat[at:at + n].view(s))
            at += n
        return views

    def index(self):
        return 0

    def is_last(self):
        return True


LAYERS = ((64, 3, 3, 3), (64,), (10, 64), (10,))  # a conv, its bias, a linear layer, its bias


def _inputs(rank):
    gen = torch.Generator().manual_seed(100 + rank)
    return {n: torch.randn(s, generator=gen) for n, s in [("bucket0", (1000,)), ("conv", (8, 3, 3, 3)), ("fc", (10, 32))]}


def _powersgd_against_torch(comm, rank, r, steps=3, shapes=((32, 24),)):
    """Our per-layer exchange and torch's powerSGD_hook on one bucket of tensors with these shapes,
    same inputs, error feedback and warm start on. Returns (ours, theirs), each step's result flat."""
    from torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import PowerSGDState, powerSGD_hook
    state = PowerSGDState(process_group=None, matrix_approximation_rank=r, start_powerSGD_iter=2,
                          min_compression_rate=1, use_error_feedback=True, warm_start=True, random_seed=0)
    state.iter = state.start_powerSGD_iter  # skip the hook's plain all-reduce warm-up
    comp, mem = COMPRESSORS.build("powersgd", CompressionConfig(name="powersgd", rank=r)), Residual()
    # start from the hook's first Qs: torch.manual_seed(state.rng.randint(1e9)); randn(1, cols, r) each
    gen = torch.Generator().manual_seed(int(np.random.RandomState(0).randint(1_000_000_000)))
    for i, shape in enumerate(shapes):
        if comp.compresses(shape):
            cols = math.prod(shape[1:])
            comp.q[f"t{i}"] = torch.randn(1, cols, min(r, shape[0], cols), generator=gen, dtype=torch.float64)[0]
    ours, theirs = [], []
    for step in range(steps):
        gen = torch.Generator().manual_seed(10 * step + rank)
        gs = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
        theirs.append(powerSGD_hook(state, _Bucket([g.clone() for g in gs])).wait().clone())
        ours.append(torch.cat([exchange(g.clone(), f"t{i}", comp, mem, comm).reshape(-1) for i, g in enumerate(gs)]))
    return ours, theirs


def _worker(rank, world, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=30))
    try:
        comm, xs, res = Comm(rank, world), _inputs(rank), {}
        plain = {}
        for n, x in xs.items():
            t = x.clone()
            dist.all_reduce(t)
            plain[n] = t / world
        res["plain"] = plain
        cfg = CompressionConfig(ratio=0.1, levels=8, rank=2)
        for name in NAMES:
            comp = COMPRESSORS.build(name, cfg)
            res[name] = {n: exchange(x.clone(), n, comp, NoMemory(), comm) for n, x in xs.items()}
            comp, before = COMPRESSORS.build(name, cfg), comm.ledger.messages  # fresh: the same step again
            together = exchange_many([(x.clone(), n) for n, x in xs.items()], comp, NoMemory(), comm)
            res[f"{name} many"] = {"out": dict(zip(xs, together)), "messages": comm.ledger.messages - before}
        res["powersgd_vs_torch"] = {r: _powersgd_against_torch(comm, rank, r) for r in (1, 2, 3)}
        res["powersgd_vs_torch_layers"] = _powersgd_against_torch(comm, rank, 2, shapes=LAYERS)
        torch.save(res, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """Run `_worker` on 2 processes once; returns each rank's results. Never hangs, leaves none behind."""
    out = tmp_path_factory.mktemp("workers")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GLOO_SOCKET_IFNAME", "lo")
        ctx = mp.spawn(_worker, args=(WORLD, _free_port(), str(out)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + SPAWN_TIMEOUT_S
    try:
        while not ctx.join(timeout=1):  # raises if a worker raised
            if time.monotonic() > deadline:
                pytest.fail(f"2-worker run did not finish within {SPAWN_TIMEOUT_S} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
            p.join(5)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def test_none_exchange_equals_plain_all_reduce_bit_for_bit(workers):
    for res in workers:
        for n, plain in res["plain"].items():
            assert torch.equal(res["none"][n], plain), n


@pytest.mark.parametrize("name", NAMES)
def test_every_worker_gets_the_same_average(name, workers):
    for n in workers[0][name]:
        assert torch.equal(workers[0][name][n], workers[1][name][n]), n


@pytest.mark.parametrize("name", ["none", "fp16", "bf16", "topk", "randomk", "signsgd", "efsignsgd", "powersgd"])
def test_many_tensors_in_one_exchange_equal_one_by_one_in_fewer_collectives(name, workers):
    """`exchange_many` of three tensors gives what three `exchange`s give, bit for bit, on every
    worker, in one collective where payloads can share one (top-k's values and indices of every
    tensor in one all-gather: 2 ranks, so one message); PowerSGD keeps its own rounds."""
    for res in workers:
        for n, out in res[f"{name} many"]["out"].items():
            assert torch.equal(out, res[name][n]), n
    messages = workers[0][f"{name} many"]["messages"]
    if name == "powersgd":
        assert messages > 2 * (WORLD - 1)  # its P and Q all-reduces, per compressible tensor
    else:
        allreduce = COMPRESSORS.build(name, CompressionConfig()).allreduce
        assert messages == (2 * (WORLD - 1) if allreduce else WORLD - 1), messages


@pytest.mark.parametrize("name", ["fp16", "bf16", "topk", "randomk", "signsgd", "efsignsgd"])
def test_exchange_equals_average_of_local_roundtrips(name, workers):
    """Deterministic compressors against a one-process reference (1e-6): summable payloads
    (allreduce = True) are summed in their wire dtype then decompressed; the others are
    decompressed one by one and averaged. PowerSGD's rounds mix workers (P is summed before Q is
    computed), so it has its own reference: torch's hook, below.
    """
    cfg = CompressionConfig(ratio=0.1, levels=8, rank=2)
    for n in workers[0][name]:
        comps = [COMPRESSORS.build(name, cfg) for _ in range(WORLD)]  # fresh: the same step on each
        sent = [c.compress(_inputs(r)[n], n) for r, c in enumerate(comps)]
        if comps[0].allreduce:
            summed = [sum(ts) for ts in zip(*(p for p, _ in sent))]
            expected = comps[0].decompress(summed, sent[0][1]) / WORLD
        else:
            expected = sum(c.decompress(p, ctx) for c, (p, ctx) in zip(comps, sent)) / WORLD
        assert torch.allclose(workers[0][name][n], expected, rtol=1e-6, atol=1e-6), n


@pytest.mark.parametrize("r", [1, 2, 3])
def test_powersgd_matches_torch_powerSGD_hook(r, workers):
    """Rank r, error feedback and warm start over 3 steps, float64: equal within 1e-9 (rank 3 uses
    torch's QR where we use Gram-Schmidt: columns may flip sign, P Q^T does not)."""
    for res in workers:
        ours, theirs = res["powersgd_vs_torch"][r]
        for step, (a, b) in enumerate(zip(ours, theirs)):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-9), f"step {step}: {(a - b).abs().max():.2e}"


def test_powersgd_per_layer_matches_torch_on_a_whole_model_bucket(workers):
    """A conv weight, its bias and a linear layer in one bucket: torch's hook views each as
    (shape[0], rest) and sends 1-D biases uncompressed; ours, per layer, must do the same."""
    for res in workers:
        ours, theirs = res["powersgd_vs_torch_layers"]
        for step, (a, b) in enumerate(zip(ours, theirs)):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-9), f"step {step}: {(a - b).abs().max():.2e}"


def test_powersgd_sends_vectors_uncompressed_per_layer_and_folds_a_global_bucket():
    layer = COMPRESSORS.build("powersgd", CompressionConfig(name="powersgd", rank=2))
    flat = COMPRESSORS.build("powersgd", CompressionConfig(name="powersgd", rank=2, scope="global"))
    assert not layer.compresses((64,)) and layer.payload_bytes((64,)) == 64 * 4
    assert flat.compresses((1000,)) and flat.payload_bytes((1000,)) == 2 * (32 + 32) * 4  # 32 x 32 fold


def test_randomk_with_error_feedback_keeps_a_bounded_residual():
    """Unscaled under error feedback: the residual stays bounded (scaled by n/k it grew geometrically)."""
    from lab.compression.memory import Residual
    cc = CompressionConfig(name="randomk", ratio=0.01, error_feedback=True)
    comp, mem = COMPRESSORS.build("randomk", cc), Residual()
    g = torch.randn(1000, dtype=torch.float64)
    for _ in range(300):
        x = mem.compensate(g, "w")
        payload, ctx = comp.compress(x, "w")
        mem.update(x, "w", comp, payload, ctx)
    assert mem.residuals["w"].abs().max() < 5 * 100 * g.abs().max()  # n/k = 100
    assert COMPRESSORS.build("randomk", CompressionConfig(name="randomk")).unbiased  # unbiased without EF
