"""Agents that talk (chapter 10b): the experience messages, their bytes, and the two teams.

Local processes in one gloo group (lab.procs), no ipyparallel: the chapter runs the same code on
the cluster under nbval.
"""
import numpy as np
import pytest
import torch

from lab.agents.talk import Team, bytes_per_step, message_bytes, team_config
from lab.config import DataConfig
from lab.errors import ConfigError
from lab.procs import Group, train
from lab.tasks import TASKS
from lab.tasks.talk import exchange, pack, unpack

WORLD = 3


@pytest.fixture(scope="module")
def group():
    with Group(WORLD, timeout=120) as g:
        yield g


def _exchange_job(rank, world, rows):
    """On each process: a message whose every number says who sent it, exchanged through a Comm."""
    from lab.comm import Comm
    comm = Comm(rank, world)
    obs = np.full((rows, 4), rank, np.float32)
    inbox = exchange(comm, pack(obs, np.full(rows, rank, np.int64), np.full(rows, 10.0 * rank, np.float32)))
    return [m.clone() for m in inbox], comm.ledger.as_dict()


def test_exchange_delivers_every_message_and_charges_its_bytes(group):
    rows = 7
    out = group.run(_exchange_job, rows)
    for rank, (inbox, ledger) in enumerate(out):
        assert len(inbox) == WORLD
        for sender, msg in enumerate(inbox):
            obs, act, ret = unpack(msg)
            assert (obs == sender).all() and (act == sender).all() and (ret == 10.0 * sender).all()
        b = message_bytes(WORLD, rows, 1)
        assert ledger["bytes_sent"] == ledger["bytes_recv"] == b == (WORLD - 1) * rows * 6 * 4
        assert ledger["messages"] == WORLD - 1


def test_pack_round_trips():
    obs, act, ret = np.random.rand(5, 4).astype(np.float32), np.array([0, 1, 1, 0, 1]), np.arange(5, dtype=np.float32)
    msg = pack(obs, act, ret)
    assert msg.dtype == torch.float32 and msg.shape == (5, 6)
    o, a, r = unpack(msg)
    assert np.array_equal(o, obs) and np.array_equal(a, act) and np.array_equal(r, ret)


def test_alone_a_talking_agent_is_the_quiet_one():
    """Without peers (no comm bound) the talking task's loss is the cartpole task's, number for number."""
    from lab.models.actor_critic import ActorCritic
    cfg = DataConfig(name="cartpole", batch_size=8, n_envs=2, seed=3)
    losses = []
    for name in ("cartpole", "cartpole_talk"):
        task = TASKS.build(name, cfg, torch.float32)
        torch.manual_seed(0)
        model = ActorCritic(4, 2)
        losses.append([task.loss(model, 8)[0].item() for _ in range(3)])
    assert losses[0] == losses[1]


def test_team_config_rejects_bad_values_in_one_line():
    for kw, knob in (({"steps": 0}, "steps"), ({"n_envs": 0}, "n_envs"), ({"lr": 0.0}, "lr"), ({"rollout": 2000}, "rollout")):
        with pytest.raises(ConfigError) as e:
            team_config(True, **kw)
        assert str(e.value).startswith(knob) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="^talk"):
        team_config("yes")
    assert Team().steps == 150


class _Run:
    def __init__(self, out):
        self.records = [r for o in out for r in o["records"]]


def test_quiet_team_sends_nothing_and_talking_team_sends_its_experience(group):
    steps, rollout, n_envs = 6, 4, 2
    quiet = _Run(train(team_config(False, steps, rollout=rollout, n_envs=n_envs, eval_every=10**6), group))
    talking = _Run(train(team_config(True, steps, rollout=rollout, n_envs=n_envs, eval_every=10**6), group))
    assert len(quiet.records) == len(talking.records) == WORLD * steps
    assert all(r["bytes_sent"] == r["bytes_recv"] == r["messages"] == 0 for r in quiet.records)
    b = message_bytes(WORLD, rollout, n_envs)
    assert bytes_per_step(talking) == {r: float(b) for r in range(WORLD)}
    assert all(r["heard"] == (WORLD - 1) * rollout * n_envs and r["n"] == rollout * n_envs for r in talking.records)
    # the talking agents learn from one pooled batch: the same loss on every rank; the quiet ones differ
    for run, same in ((talking, True), (quiet, False)):
        by_step = {}
        for r in run.records:
            by_step.setdefault(r["step"], set()).add(r["loss"])
        assert all(len(v) == 1 for v in by_step.values()) is same
