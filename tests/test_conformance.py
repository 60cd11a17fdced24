"""The same checks for every registered strategy, on local processes in a gloo group (no ipyparallel).

Each strategy class declares what is checked (lab.strategies.base): `equals_sync` (the options
under which it is `sync` step for step), `deterministic` (resume must equal an uninterrupted
run) and `traffic(...)` (its bytes per step). A new strategy is tested by being registered.
Runs: the digits with the MLP, 2 workers, float64, a few steps each (lab.procs.train).
"""
import math

import pytest
import torch

from lab.config import RunConfig
from lab.procs import Group, train
from lab.strategies import STRATEGIES
from lab.strategies.base import Strategy

# `compressed` is no strategy of its own (it builds its base): checked through a base below
NAMES = [n for n in STRATEGIES.names() if isinstance(STRATEGIES.get(n), type) and issubclass(STRATEGIES.get(n), Strategy)]
BASE = RunConfig(steps=10, eval_every=10**6, checkpoint_every=10**6).replace(**{
    "data.name": "digits", "model.name": "mlp", "model.dtype": "float64", "model.dropout": 0.0,
    "optim.name": "sgd", "optim.lr": 0.1})


@pytest.fixture(scope="module")
def group():
    with Group(2, timeout=90) as g:
        yield g


@pytest.fixture(scope="module")
def sync_run(group):
    return train(BASE, group)


def cls(name):
    return STRATEGIES.get(name)


def max_diff(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def flat_state(optimizer_state: dict) -> dict:
    """An optimizer state dict's tensors by a flat name (to compare across workers)."""
    return {f"{p}.{k}": v for p, st in optimizer_state["state"].items() for k, v in st.items() if torch.is_tensor(v)}


def traffic_probe(trainer):
    """(param_bytes, itemsize, the last strategy's traffic formula) on this worker."""
    ps = [p for p in trainer.model.parameters() if p.requires_grad]
    itemsize = ps[0].element_size()
    param_bytes = sum(p.numel() for p in ps) * itemsize
    return param_bytes, itemsize, trainer.strategy.traffic(trainer.ctx.rank, trainer.ctx.world, param_bytes, itemsize)


def test_every_strategy_declares_the_protocol():
    assert {"sync", "gossip", "diloco"} <= set(NAMES)
    for n in NAMES:
        c = cls(n)
        assert c.kind in ("gradients", "server", "parameters"), n
        assert c.equals_sync is None or isinstance(c.equals_sync, dict), n
        assert isinstance(c.deterministic, bool), n


@pytest.mark.parametrize("name", NAMES)
def test_degenerate_settings_equal_sync(group, sync_run, name):
    """Under its `equals_sync` options, with plain SGD in float64, each step is sync's (to 1e-6)."""
    if cls(name).equals_sync is None:
        pytest.skip(f"{name} declares no setting under which it equals sync")
    knobs = {f"strategy.{k}": v for k, v in cls(name).equals_sync.items()}
    out = train(BASE.replace(**{"strategy.name": name, **knobs}), group)
    for mine, ref in zip(out, sync_run):
        assert max_diff(mine["model"], ref["model"]) < 1e-6
        losses = [r["loss"] for r in mine["records"]]
        assert losses == pytest.approx([r["loss"] for r in ref["records"]], abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_replicas_agree_after_detach(group, name):
    """With momentum (optimizer state) and periods that leave work pending at the end."""
    cfg = BASE.replace(**{"strategy.name": name, "optim.name": "momentum", "optim.lr": 0.05,
                          "strategy.period": 3, "steps": 10})
    a, b = train(cfg, group)
    assert max_diff(a["model"], b["model"]) < 1e-12
    sa, sb = flat_state(a["optimizer"]), flat_state(b["optimizer"])
    assert sa.keys() == sb.keys()
    if sa:
        assert max_diff(sa, sb) < 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_switching_to_and_from_every_other_strategy_keeps_training(group, name):
    """name -> other -> name -> next other ... through Trainer.apply: loss finite and falling."""
    others = [n for n in NAMES if n != name]
    every = 3
    changes, step = {}, every
    for other in others:
        changes[step] = {"strategy": other}
        changes[step + every] = {"strategy": name}
        step += 2 * every
    cfg = BASE.replace(**{"strategy.name": name, "optim.name": "momentum", "optim.lr": 0.05,
                          "strategy.period": 2, "steps": step + every})
    for out in train(cfg, group, changes=changes, timeout=120):
        recs = out["records"]
        losses = [r["loss"] for r in recs]
        assert all(math.isfinite(x) for x in losses)
        assert {r["strategy"] for r in recs} == set(NAMES)
        k = len(losses) // 4
        assert sum(losses[-k:]) / k < 0.7 * sum(losses[:k]) / k, losses


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_then_resume_equals_an_uninterrupted_run(group, name):
    if not cls(name).deterministic:
        pytest.skip(f"{name} is not deterministic (thread timing decides its result)")
    from lab.checkpoints import combine
    cfg = BASE.replace(**{"strategy.name": name, "optim.name": "momentum", "optim.lr": 0.05,
                          "strategy.period": 4, "steps": 12, "checkpoint_every": 6})
    whole = train(cfg, group)
    ck = combine([out["checkpoints"][0] for out in whole])  # every rank's piece after step 5
    assert ck["step"] == 6
    resumed = train(cfg, group, resume=ck)
    for a, b in zip(whole, resumed):
        assert max_diff(a["model"], b["model"]) < 1e-12
        assert [r["loss"] for r in a["records"][6:]] == pytest.approx([r["loss"] for r in b["records"]], abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_ledger_bytes_match_the_traffic_formula(group, name):
    cfg = BASE.replace(**{"strategy.name": name, "strategy.period": 1})
    outs = train(cfg, group, probe=traffic_probe)
    if any(o["probe"][2] is None for o in outs):
        pytest.skip(f"{name}'s bytes per step vary (traffic() is None)")
    for o in outs:
        sent, recv = o["probe"][2]
        for r in o["records"]:
            assert abs(r["bytes_sent"] - sent) <= 1 and abs(r["bytes_recv"] - recv) <= 1, (r["step"], r["bytes_sent"], sent)


def test_compressed_is_its_base_with_a_compressor(group):
    """`compressed` builds its base: the same losses as the base given the same compressor."""
    fp16 = {"strategy.compression.name": "fp16"}
    a = train(BASE.replace(**{"strategy.name": "compressed", "strategy.base": "sync", **fp16}), group)
    b = train(BASE.replace(**{"strategy.name": "sync", **fp16}), group)
    assert [r["loss"] for r in a[0]["records"]] == [r["loss"] for r in b[0]["records"]]
    assert max_diff(a[0]["model"], b[0]["model"]) == 0
