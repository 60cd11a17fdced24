"""Chapter 10, intelligent agents: the agent loop, DQN and the actor-critic through the Task protocol.

Seeds were chosen from sweeps (see the agents report): budgets are counted in environment steps
or updates (not seconds, which depend on the machine's load) with margin over the slowest swept
seed, and every solved policy is re-checked on evaluation episodes it was not stopped on, so a
small numeric difference between machines does not flip a test.
"""
import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")   # pygame renders off-screen on CI

import time

import numpy as np
import pytest
import torch

from lab.agents import evaluate_policy, greedy_policy, make_env, random_policy, run_episode
from lab.config import DataConfig, ModelConfig
from lab.errors import ConfigError


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks run fastest (and most reproducibly) on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_continuous_env_is_rejected_in_one_line():
    with pytest.raises(ConfigError) as e:
        make_env("Pendulum-v1")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("env must be an environment with a discrete action space")
    assert "Pendulum-v1" in msg
    with pytest.raises(ConfigError, match="^env must be"):
        make_env("NoSuchEnv-v0")


def test_run_episode_loop_and_frames():
    env = make_env("CartPole-v1", seed=0, render_mode="rgb_array")
    ep = run_episode(env, random_policy(env), seed=0, frames=True)
    env.close()
    assert ep.length >= 1 and ep.ret == ep.length          # CartPole pays 1 per step survived
    assert len(ep.frames) == ep.length + 1                  # the reset frame, then one per step
    assert all(f.shape == (400, 600, 3) and f.dtype == np.uint8 for f in ep.frames)
    env = make_env("CartPole-v1", seed=0)
    capped = run_episode(env, lambda obs: 0, max_steps=3)
    assert capped.length <= 3 and capped.frames == []
    # the random baseline stays far from "solved"
    assert evaluate_policy("CartPole-v1", random_policy(env), episodes=10) < 50


def test_dqn_solves_cartpole():
    from lab.agents.dqn import DQNConfig, train_dqn
    with pytest.raises(ConfigError, match="^gamma must be"):
        DQNConfig(gamma=1.5).validate()
    t = time.perf_counter()
    seen = []
    agent, history = train_dqn(DQNConfig(), seed=9, callback=seen.append)
    wall = time.perf_counter() - t
    assert seen == history
    last = history[-1]
    assert last["kind"] == "eval" and last["solved"], history[-5:]
    # seed 9 solves at step 2,000 (~1 s on an idle core); 20 swept seeds needed 2,000-19,000 steps
    assert last["step"] <= 20_000, (last, wall)
    # re-check on 20 greedy episodes the stopping rule never saw
    assert evaluate_policy("CartPole-v1", agent.policy(), episodes=20, seed=30_000) >= 195


def make_control(seed=0, rollout=16):
    from lab.tasks import TASKS
    from lab.models import MODELS
    task = TASKS.build("cartpole", DataConfig(name="cartpole", batch_size=rollout, seed=seed))
    torch.manual_seed(seed)
    net = MODELS.build("actor_critic", task.spec, ModelConfig(name="actor_critic"))
    return task, net


def test_control_task_protocol():
    from lab.config import RunConfig
    from lab.config import DataConfig
    N_ENVS = DataConfig().n_envs
    cfg = RunConfig(); cfg.data.name, cfg.model.name = "cartpole", "actor_critic"
    cfg.validate()                                          # data and model are compatible
    task, net = make_control(rollout=8)
    assert task.kind == "control" and task.unit == "env_steps" and task.spec["n_actions"] == 2
    batch = next(task.batches(rank=1, world=2, batch_size=8))
    loss, n, extras = task.loss(net, batch)
    assert loss.dim() == 0 and loss.requires_grad and n == 8 * N_ENVS
    assert extras["episodes"] >= 0 and 0 < extras["entropy"] <= np.log(2) + 1e-6
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    assert 0 < task.evaluate(net)["return"] <= 500


def test_a2c_reaches_150_through_the_task():
    from lab.agents.actor_critic import train_a2c
    task, net = make_control(seed=0)
    t = time.perf_counter()
    history = train_a2c(task, net, steps=400, lr=1e-3, eval_every=25, target=195)
    wall = time.perf_counter() - t
    evals = [r for r in history if r["kind"] == "eval"]
    # seed 0 reaches it after 100 updates (12,800 env steps); 10 swept seeds needed 50-125 updates
    assert evals[-1]["return"] >= 195 and evals[-1]["step"] <= 400, (evals, wall)
    assert any("episode_return" in r for r in history)
    # 20 greedy episodes the stopping rule never saw
    assert evaluate_policy("CartPole-v1", greedy_policy(net), episodes=20, seed=30_000) >= 150
