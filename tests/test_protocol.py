"""The strategy and compression protocol: state that round-trips, one compression owner per worker,
non-blocking byte-accounted sends, and per-worker checkpoints (issue 14, item 2).

The multi-process tests run on local processes joined in a gloo group on loopback (`lab.procs`),
no ipyparallel.
"""
import pytest
import torch

from lab import checkpoints
from lab.comm import Comm
from lab.compression import COMPRESSORS
from lab.compression.base import Base
from lab.compression.memory import NoMemory, Residual
from lab.compression.owner import Compression
from lab.config import CompressionConfig, RunConfig
from lab.procs import run_group, train
from lab.strategies import STRATEGIES
from lab.strategies.base import KINDS
from lab.strategies.buckets import load_flat
from lab.strategies.averaging import unpack_state
from lab.strategies.server import META, Server

EXACT = {"model.dtype": "float64", "model.dropout": 0.0, "optim.name": "sgd", "optim.lr": 0.1}


# -- declarations -----------------------------------------------------------------------------------
def test_every_strategy_declares_its_kind_and_the_compressed_bases_come_from_it():
    from lab.strategies.compressed import bases
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        if isinstance(cls, type):  # "compressed" is a factory over the others
            assert cls.kind in KINDS, name
    assert {"sync", "ps", "async", "ssp"} <= set(bases()) and "local" not in bases()
    assert STRATEGIES.get("local").equals_sync == {"period": 1} and STRATEGIES.get("async").equals_sync is None
    assert not STRATEGIES.get("async").deterministic and STRATEGIES.get("sync").deterministic


def test_none_is_an_ordinary_compressor_and_the_only_identity():
    for name in COMPRESSORS.names():
        c = COMPRESSORS.build(name, CompressionConfig(name=name))
        assert isinstance(c, Base), name
        assert c.identity == (name == "none"), name


def test_traffic_formulas():
    cfg = RunConfig().strategy
    sync = STRATEGIES.get("sync")(cfg, None)
    assert sync.traffic(0, 4, 1000, itemsize=4) == (1.5 * 1016, 1.5 * 1016)  # + 4 arrival slots
    ps = STRATEGIES.get("ps")(cfg, None)
    assert ps.traffic(0, 4, 1000) == (3000, 3000) and ps.traffic(2, 4, 1000) == (1000, 1000)
    asy = STRATEGIES.get("async")(cfg, None)
    assert asy.traffic(0, 4, 1000) == (0, 0) and asy.traffic(1, 4, 1000, itemsize=8) == (1000, 1000 + 8 * META)
    assert STRATEGIES.get("ssp")(cfg, None).traffic(1, 4, 1000) is None
    cfg.period = 4
    assert STRATEGIES.get("local")(cfg, None).traffic(1, 4, 1000) is None


# -- the asynchronous server's state ------------------------------------------------------------------
def _server(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(5, 3).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, Server(list(model.parameters()), opt, world=2, scale=0.5)


def test_async_server_state_round_trips():
    _, a = _server()
    grads = [torch.randn(18, dtype=torch.float64) for _ in range(5)]
    for i, g in enumerate(grads):
        a.push(i % 2, g)
    a.read_into(1, torch.zeros(18 + META, dtype=torch.float64))
    sd = a.state_dict()
    assert sd["params"].device.type == "cpu" and sd["version"] == 5 and sd["clock"] == [3, 2] and sd["read"] == [0, 5]
    _, b = _server(seed=1)  # other parameters, no momentum yet
    b.load_state_dict(sd)
    assert (b.version, b.read, b.clock) == (a.version, a.read, a.clock)
    g = torch.randn(18, dtype=torch.float64)
    assert a.push(0, g) == b.push(0, g) == 5           # the same staleness ...
    for p, q in zip(a.params, b.params):               # ... and the same update, momentum included
        assert torch.equal(p, q)


def test_a_reply_to_the_standby_carries_the_servers_optimizer_state():
    """Elastic async/ssp: a reply to rank 1 (the standby) says the server's optimizer state follows
    and hands it over, of the same moment as the reply's parameters; a server built from the two
    is the server, momentum included (the next update is the same). Other readers get neither."""
    _, a = _server()
    a.standby = True   # as `Server(..., standby=True)` makes it
    for i in range(5):
        a.push(i % 2, torch.randn(18, dtype=torch.float64))
    out = torch.zeros(18 + META, dtype=torch.float64)
    lag, packed = a.read_into(1, out)
    assert out[-4] == 1 and packed.dtype == torch.uint8 and out[-1] == a.version == 5
    state = unpack_state(packed)
    a.push(0, torch.ones(18, dtype=torch.float64))        # the server moves on after the read
    _, b = _server(seed=1)                                 # the standby's side: other parameters so far
    load_flat(b.params, out[:-META])                       # the parameters it read ...
    b.optimizer.load_state_dict(state)                     # ... and the state sent with them
    b.push(0, torch.ones(18, dtype=torch.float64))         # the update the server applied after the read
    for p, q in zip(a.params, b.params):
        assert torch.equal(p, q)
    assert a.read_into(0, out)[1] is None and out[-4] == 0
    a.standby = False
    assert a.read_into(1, out)[1] is None and out[-4] == 0  # not an elastic run: no state travels


def test_async_server_state_loads_under_another_worker_count():
    _, a = _server()
    a.push(0, torch.ones(18, dtype=torch.float64))
    sd = a.state_dict()
    sd["clock"], sd["read"] = [1, 0, 0], [0, 0, 0]     # saved by 3 workers
    _, b = _server(seed=1)
    b.load_state_dict(sd)
    assert b.clock == [0, 0] and b.read == [1, 1] and torch.equal(b.params[0], a.params[0])


# -- the compression owner ----------------------------------------------------------------------------
def _owner(**kw):
    return Compression(CompressionConfig(**{"name": "topk", "ratio": 0.25, "error_feedback": True, **kw}))


def _residual_after_one_exchange(comp, x):
    comp.exchange(x.clone(), "b0", Comm(0, 1))
    return comp.memory.residuals["b0"].clone()


@pytest.mark.parametrize("mode", ["keep", "reset", "flush"])
def test_compression_switch_applies_on_switch_to_the_residuals(mode):
    x = torch.arange(8, dtype=torch.float64) - 3.5
    comp = _owner(on_switch=mode)
    r = _residual_after_one_exchange(comp, x)
    assert r.abs().sum() > 0
    memory = comp.memory
    comp.switch(CompressionConfig(name="qsgd", levels=4, error_feedback=True, on_switch=mode))
    assert comp.memory is memory and comp.compressor.name == "qsgd"
    if mode == "keep":
        assert torch.equal(comp.memory.residuals["b0"], r)
    elif mode == "reset":
        assert comp.memory.residuals == {}
    else:  # the next exchange sends gradient + residual uncompressed, once
        out = comp.exchange(x.clone(), "b0", Comm(0, 1))
        assert torch.equal(out, x + r)
        assert not comp.memory.take_flush("b0")


def test_compression_switch_is_a_no_op_for_equal_settings_and_follows_error_feedback():
    comp = _owner()
    compressor, memory = comp.compressor, comp.memory
    comp.switch(CompressionConfig(name="topk", ratio=0.25, error_feedback=True))
    assert comp.compressor is compressor and comp.memory is memory
    comp.switch(CompressionConfig(name="topk", ratio=0.25, error_feedback=False))
    assert isinstance(comp.memory, NoMemory)
    comp.switch(CompressionConfig(name="none"))
    assert comp.identity and comp.wire(torch.zeros(4), "ps") is None


def test_live_edits_of_the_run_config_do_not_reach_the_owner_without_switch():
    cc = CompressionConfig(name="topk", ratio=0.25)
    comp = Compression(cc)
    cc.ratio = 0.5  # what a live change does to the trainer's config
    assert comp.cfg.ratio == 0.25
    comp.switch(cc)
    assert comp.cfg.ratio == 0.5 and comp.compressor.cfg.ratio == 0.5


def test_compression_state_round_trips():
    x = torch.randn(6, 5, dtype=torch.float64)
    a = Compression(CompressionConfig(name="powersgd", rank=1, error_feedback=True))
    a.exchange(x.clone(), "w", Comm(0, 1))
    a.memory.flush()
    sd = a.state_dict()
    b = Compression(CompressionConfig(name="powersgd", rank=1, error_feedback=True))
    b.load_state_dict(sd)
    assert isinstance(b.memory, Residual) and torch.equal(b.memory.residuals["w"], a.memory.residuals["w"])
    assert b.memory.flushing == {"w"} and torch.equal(b.compressor.q["w"], a.compressor.q["w"])
    y = torch.randn(6, 5, dtype=torch.float64)
    a.memory.flushing.clear(), b.memory.flushing.clear()
    assert torch.equal(a.exchange(y.clone(), "w", Comm(0, 1)), b.exchange(y.clone(), "w", Comm(0, 1)))
    r = Compression(CompressionConfig(name="randomk", ratio=0.5))
    r.exchange(torch.ones(10), "v", Comm(0, 1))
    r2 = Compression(CompressionConfig(name="randomk", ratio=0.5))
    r2.load_state_dict(r.state_dict())
    assert r2.compressor.steps == {"v": 1}  # the shared seeds stay in lockstep after a resume
    c = Compression(CompressionConfig(name="topk", error_feedback=True))  # another compressor: residuals only
    c.load_state_dict(sd)
    assert torch.equal(c.memory.residuals["w"], sd["memory"]["residuals"]["w"]) and c.compressor.state_dict() == {}


# -- Comm.isend / irecv -------------------------------------------------------------------------------
def _p2p(rank, world, latency_ms):
    from lab.config import LinkConfig
    comm = Comm(rank, world, link=LinkConfig(latency_ms=latency_ms))
    mine = torch.full((25,), float(rank + 1))
    theirs = torch.zeros(25)
    peer = 1 - rank
    r = comm.irecv(theirs, peer, tag=3)
    s = comm.isend(mine, peer, tag=3)
    s.wait()
    r.wait()
    r.wait()  # a second wait is free
    return theirs, comm.ledger.as_dict()


def test_isend_irecv_deliver_and_are_charged_like_send_and_recv():
    out = run_group(_p2p, 2, 30.0, timeout=60)
    for rank, (theirs, lg) in enumerate(out):
        assert torch.equal(theirs, torch.full((25,), float(2 - rank)))
        assert lg["bytes_sent"] == lg["bytes_recv"] == 100 and lg["messages"] == 1
        assert lg["framing_bytes"] == 290            # gloo: one message's framing, as `send`
        # the sender pays the simulated link, once: the 30 ms in flight from isend, less what the wait already took
        assert 0 <= lg["sim_link_s"] <= 0.030 and lg["sim_link_s"] + lg["comm_s"] >= 0.029
        assert lg["comm_s"] > 0


# -- per-worker checkpoints ---------------------------------------------------------------------------
def _local_cfg(steps):
    return RunConfig(steps=steps, checkpoint_every=4, eval_every=1000).replace(**{
        **EXACT, "strategy.name": "local", "strategy.period": 3, "data.batch_size": 16})


@pytest.fixture(scope="module")
def local_run():
    """8 steps of local SGD (H = 3) on 2 workers, checkpoints after steps 4 and 8."""
    return train(_local_cfg(8), world=2, timeout=180)


def test_every_rank_makes_its_own_piece_with_its_strategy_state(local_run):
    for rank, o in enumerate(local_run):
        assert [c["step"] for c in o["checkpoints"]] == [4, 8]
        c = o["checkpoints"][0]
        assert c["rank"] == rank and c["world"] == 2
        assert c["strategy"] == {"name": "local", "state": {"local": 1, "state_synced": False}}
    a, b = (o["checkpoints"][0]["model"] for o in local_run)  # local SGD: the replicas drifted apart
    assert any(not torch.equal(a[k], b[k]) for k in a)
    ck = checkpoints.combine([o["checkpoints"][0] for o in local_run][::-1])
    assert [p["rank"] for p in ck["workers"]] == [0, 1] and ck["model"] is ck["workers"][0]["model"]


def test_resume_gives_each_rank_its_own_piece_and_continues_exactly(local_run):
    ck = checkpoints.combine([o["checkpoints"][0] for o in local_run])  # after step 4
    resumed = train(_local_cfg(8), world=2, resume=ck, timeout=180)
    assert [r["step"] for r in resumed[0]["records"]] == [4, 5, 6, 7]
    for w, r in zip(local_run, resumed):
        assert all(torch.equal(w["model"][k], r["model"][k]) for k in w["model"])
    # rank 0's piece for everybody (an older checkpoint) resumes, but is not the same run
    old = {k: v for k, v in ck.items() if k != "workers"}
    approx = train(_local_cfg(8), world=2, resume=old, timeout=180)
    whole = local_run[0]["model"]
    assert any(not torch.equal(whole[k], approx[0]["model"][k]) for k in whole)


def test_piece_falls_back_to_rank_0_for_old_checkpoints_and_other_worker_counts():
    p0 = {"step": 4, "rank": 0, "model": {"w": torch.zeros(1)}, "compression": {"memory": {"residuals": {"b": 1}}, "state": {"steps": {"b": 4}}}}
    p1 = {"step": 4, "rank": 1, "model": {"w": torch.ones(1)}, "compression": {}}
    ck = checkpoints.combine([p1, p0])
    assert checkpoints.piece(ck, 1, 2) is p1 and checkpoints.piece(ck, 0, 2) is p0
    other = checkpoints.piece(ck, 2, 3)  # three workers now: everybody starts from rank 0's piece
    assert other["model"] is p0["model"] and other["compression"] == {"memory": {}, "state": {"steps": {"b": 4}}}
    assert checkpoints.piece(ck, 0, 3)["compression"] == p0["compression"]
    single = {"step": 4, "model": {"w": torch.zeros(1)}, "optimizer": {}}  # before per-worker pieces
    assert checkpoints.piece(single, 1, 2) == single
    with pytest.raises(ValueError):
        checkpoints.combine([p0, {**p1, "step": 8}])


def test_async_checkpoint_holds_the_server_state_on_rank_0_only_and_resumes():
    cfg = RunConfig(steps=6, checkpoint_every=3, eval_every=1000).replace(**{
        **EXACT, "strategy.name": "async", "data.batch_size": 16})
    first = train(cfg, world=2, timeout=180)
    s0, s1 = (o["checkpoints"][0]["strategy"]["state"] for o in first)
    assert s1 == {} and set(s0["server"]) == {"params", "optimizer", "version", "read", "clock"}
    assert s0["server"]["clock"][0] == 3 and s0["server"]["version"] >= 3
    ck = checkpoints.combine([o["checkpoints"][0] for o in first])
    resumed = train(cfg, world=2, resume=ck, timeout=180)
    assert [r["step"] for r in resumed[1]["records"]] == [3, 4, 5]
    last = resumed[0]["checkpoints"][-1]["strategy"]["state"]["server"]
    # continued, not restarted: rank 0's clock counts its pushes before and after the resume
    assert last["clock"][0] == 6 and last["version"] >= s0["server"]["version"] + 3
