"""Unit tests of the foundation: configs, sharding, the CNN, the byte ledger, the control protocol."""
import threading
import time

import numpy as np
import pytest
import torch

from lab.comm import Comm
from lab.config import LinkConfig, RunConfig
from lab.control import ControlPoint
from lab.data.shard import dirichlet_shards, iid_shards
from lab.errors import ConfigError, WorkerError


@pytest.mark.parametrize("path,value,knob", [
    ("optim.lr", -0.1, "lr"), ("optim.lr", 0, "lr"), ("strategy.name", "nope", "strategy"),
    ("model.name", "resnet9000", "model"), ("data.batch_size", 0, "batch_size"),
    ("data.name", "imagenet", "data"), ("optim.name", "lion", "optimizer"),
    ("link.bandwidth_mbps", 0, "bandwidth_mbps"), ("strategy.staleness", -1, "staleness"),
    ("strategy.period", 0, "period"), ("steps", 0, "steps"),
    ("optim.schedule", "step", "schedule"), ("optim.warmup_steps", -1, "warmup_steps"),
])
def test_bad_knob_is_one_line_naming_it(path, value, knob):
    with pytest.raises(ConfigError) as e:
        RunConfig().replace(**{path: value}).validate()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(knob + " must be"), msg
    assert e.value._render_traceback_() == [f"ConfigError: {msg}"]  # what IPython shows instead of a traceback


def test_bad_workers_and_slowdown():
    from lab.cluster import Cluster
    with pytest.raises(ConfigError, match="^workers must be"):
        Cluster.start(0)
    with pytest.raises(ConfigError, match="^slowdown must be"):
        RunConfig(slowdown=[1, 0]).validate()
    with pytest.raises(ConfigError, match="^slowdown must be a list of 2"):
        RunConfig(slowdown=[1, 3, 1]).validate(workers=2)


def test_incompatible_model_and_data():
    from lab.models import MODELS, model
    model("_text_only", kinds=("language",))(lambda spec, cfg: None)
    try:
        with pytest.raises(ConfigError, match="^model must be a model for classification data"):
            RunConfig().replace(**{"model.name": "_text_only", "data.name": "digits"}).validate()
    finally:
        MODELS._table.pop("_text_only")


def test_config_round_trip():
    cfg = RunConfig(steps=7, slowdown=[1, 3]).replace(lr=0.5, compressor="none", staleness=4)
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.optim.lr == 0.5 and again.strategy.staleness == 4


def test_iid_shards_disjoint_and_reproducible():
    a = iid_shards(1437, 3, seed=1)
    assert sum(map(len, a)) == 1437 and len(np.unique(np.concatenate(a))) == 1437
    assert all(np.array_equal(x, y) for x, y in zip(a, iid_shards(1437, 3, seed=1)))
    assert not all(np.array_equal(x, y) for x, y in zip(a, iid_shards(1437, 3, seed=2)))


def test_dirichlet_shards_are_skewed():
    labels = np.repeat(np.arange(10), 100)
    shards = dirichlet_shards(labels, 4, alpha=0.1, seed=0)
    assert len(np.unique(np.concatenate(shards))) == 1000
    # with alpha=0.1 most workers see a few classes dominate
    top_share = [np.bincount(labels[s], minlength=10).max() / len(s) for s in shards]
    assert np.mean(top_share) > 0.3


def test_digits_task_and_cnn():
    from lab.train import build
    task, model, opt = build(RunConfig())
    assert task.spec["input_shape"] == (1, 8, 8) and task.spec["n_classes"] == 10
    assert len(task.x_test) == 360 and len(task.x_train) == 1437
    x, y = next(task.batches(0, 2, 32))
    assert x.shape == (32, 1, 8, 8) and model(x).shape == (32, 10)
    # same seed, same initial weights on every worker
    _, model2, _ = build(RunConfig())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))


def test_cnn_on_cifar_shape_has_keras_parameter_count():
    from lab.models.cnn import CNN
    m = CNN(3, (32, 32))
    assert sum(p.numel() for p in m.parameters()) == 122_570  # the seeds' Keras CNN
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_ledger_single_worker_sends_nothing():
    c = Comm(rank=0, world=1)
    t = torch.ones(1000)
    c.all_reduce(t)
    assert c.ledger.bytes_sent == 0 and c.ledger.messages == 0 and torch.equal(t, torch.ones(1000))


def test_the_simulated_link_charges_the_framing_too():
    """A payload-light message still carries the transport's ~290 B on gloo: the link charges them."""
    from lab.comm import FRAMING, Comm
    comm = Comm(0, 2, link=LinkConfig(bandwidth_mbps=8, burst_kb=0))   # no token bucket: every byte paced
    per_message = FRAMING["gloo"][0]
    # 1580 B of TCP payload in 2 messages: 2 segments (one each), 66 B of headers each and an ack per second one
    assert comm.link_seconds(1000, messages=2) == pytest.approx((1000 + 2 * per_message + 66 * 3) * 8 / 8e6)
    # a large message: one header per 1448 B segment, and acknowledgements, ~6.8% on top of the payload
    big = comm.link_seconds(1_448_000 - per_message, messages=1)
    assert big == pytest.approx(1_448_000 * (1 + 1.5 * 66 / 1448) * 8 / 8e6)


def test_the_simulated_links_token_bucket_passes_a_rested_burst_at_once():
    """As tbf: a rested link passes its burst at line rate, a back-to-back transfer waits for the
    rate (after what the link still had to send), and tokens come back at the rate while it rests."""
    from lab.link import TokenBucket, tbf_burst_bytes
    rate, burst = 1e6, 16_000                     # 8 Mbit/s in bytes/s; tbf's burst at 8 Mbit/s
    assert tbf_burst_bytes(8) == burst and tbf_burst_bytes(1000) == 1_250_000
    b = TokenBucket()
    assert b.seconds(10_000, now=0.0, rate=rate, burst=burst) == 0.0              # within the burst
    assert b.seconds(10_000, now=0.0, rate=rate, burst=burst) == pytest.approx(0.004)  # 6 kB left: 4 kB paced
    assert b.seconds(5_000, now=0.002, rate=rate, burst=burst) == pytest.approx(0.002 + 0.005)  # queued behind it
    assert b.seconds(1_000, now=1.0, rate=rate, burst=burst) == 0.0               # rested: full again
    assert b.tokens == burst - 1_000
    comm = Comm(0, 2, link=LinkConfig(bandwidth_mbps=8, latency_ms=1))
    assert comm.link.burst_bytes() == burst and LinkConfig(bandwidth_mbps=8, burst_kb=2).burst_bytes() == 2_000
    first = comm.link_seconds(100_000, messages=2, start=0.0)   # 16 kB pass at once, the rest at 8 Mbit/s
    paced = LinkConfig(bandwidth_mbps=8, latency_ms=1, burst_kb=0)
    assert first == pytest.approx(Comm(0, 2, link=paced).link_seconds(100_000, messages=2) - burst / rate)


def test_simulated_link_seconds():
    link = LinkConfig(bandwidth_mbps=8, latency_ms=2)
    assert link.seconds(1_000_000, messages=3) == pytest.approx(1.0 + 0.006)
    assert not LinkConfig().active


def test_control_two_phase_same_step():
    """Two 'workers' at different speeds apply a change at the same step, none passes it early."""
    cps = [ControlPoint(timeout=5), ControlPoint(timeout=5)]
    applied = {}

    def worker(i, delay):
        for step in range(60):
            for ch in cps[i].boundary(step):
                applied[i] = (step, ch)
            cps[i].proceed(step)
            time.sleep(delay)

    threads = [threading.Thread(target=worker, args=(i, d)) for i, d in enumerate((0.001, 0.004))]
    for t in threads:
        t.start()
    time.sleep(0.05)
    proposals = [cp.propose(1, {"lr": 0.1}) for cp in cps]
    eff = max(proposals)
    for cp in cps:
        cp.finalize(1, eff)
    for t in threads:
        t.join(10)
    assert applied[0] == applied[1] == (eff, {"lr": 0.1})


def test_control_unconfirmed_change_times_out():
    cp = ControlPoint(timeout=0.3)
    cp.propose(1, {"lr": 0.1})
    t0 = time.time()
    with pytest.raises(WorkerError, match="never confirmed"):
        cp.boundary(0)
    assert time.time() - t0 < 2


def test_control_abort():
    cp = ControlPoint()
    cp.abort("worker 1 died")
    with pytest.raises(WorkerError, match="worker 1 died"):
        cp.boundary(0)


@pytest.mark.parametrize("warmup", [0, 1, 7])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "linear"])
def test_lr_schedules_match_torch_schedulers(schedule, warmup):
    """lab.optim.lr_at against torch's own schedulers stepped one step at a time: LinearLR for the
    warm-up, then ConstantLR / CosineAnnealingLR / LinearLR to 0, chained by SequentialLR."""
    from torch.optim import lr_scheduler as S
    from lab.config import OptimConfig
    from lab.optim import lr_at
    steps, cfg = 50, OptimConfig(name="sgd", lr=0.2, schedule=schedule, warmup_steps=warmup)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    rest = steps - warmup
    main = {"constant": lambda: S.ConstantLR(opt, factor=1.0, total_iters=0),
            "cosine": lambda: S.CosineAnnealingLR(opt, T_max=rest, eta_min=0.0),
            "linear": lambda: S.LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=rest)}[schedule]()
    if warmup:  # lr / warmup at step 0 up to lr at step warmup - 1; the schedule's own step 0 next
        warm = S.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0, total_iters=max(1, warmup - 1))
        sched = S.SequentialLR(opt, [warm, main], milestones=[warmup])
    else:
        sched = main
    for step in range(steps):
        assert abs(opt.param_groups[0]["lr"] - lr_at(cfg, step, steps)) < 1e-9, step
        opt.step()
        sched.step()

