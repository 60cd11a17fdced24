"""Control: an actor-critic learns from rollouts it collects itself (chapter 10, intelligent agents).

Unlike classification there is no dataset to shard: each worker owns `n_envs` environments,
seeded by the run's seed and the worker's rank so workers see different experience, and
`loss` first *collects* a short rollout with the current model, then returns the A2C loss on
it. `batches` therefore yields only the rollout length. Because the data comes from the model
being trained, `sync` on this task is A2C and `async` is A3C (its rollouts use stale weights).

Knobs read from DataConfig: `batch_size` (rollout length, steps per environment per update),
`seed`, `env` (gymnasium id) and `n_envs` (environments per worker).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F

from ..envs import DEFAULT_ENV, make_env, run_episode
from ..errors import check
from . import Task, task



@dataclass
class ControlConfig:
    """What the control task needs beyond DataConfig; defaults train CartPole-v1 with A2C."""
    env: str = DEFAULT_ENV          # gymnasium id with a discrete action space
    n_envs: int = 8                 # environments per worker stepped in lockstep (one batched forward)
    gamma: float = 0.99             # discount for the n-step returns
    value_coef: float = 0.5         # weight of the critic's squared error in the loss
    entropy_coef: float = 0.01      # entropy bonus: keeps the policy exploring early on
    eval_episodes: int = 5          # greedy episodes per evaluation ...
    eval_max_steps: int = 500       # ... each cut at this many steps, so evaluation cost is bounded
    seed: int = 0                   # environment and action-sampling seed (plus the worker's rank)

    def validate(self) -> "ControlConfig":
        for knob in ("n_envs", "eval_episodes", "eval_max_steps"):
            v = getattr(self, knob)
            check(isinstance(v, int) and not isinstance(v, bool) and v >= 1, knob, "an integer >= 1", v)
        check(0 <= self.gamma < 1, "gamma", "in [0, 1)", self.gamma)
        check(self.value_coef >= 0, "value_coef", "a number >= 0", self.value_coef)
        check(self.entropy_coef >= 0, "entropy_coef", "a number >= 0", self.entropy_coef)
        return self


class ControlTask(Task):
    """A2C on a gymnasium environment through the Task protocol (see the module docstring)."""
    kind = "control"
    unit = "env_steps"

    def __init__(self, cfg: ControlConfig, batch_size: int = 16):
        self.cfg, self.batch_size = cfg.validate(), batch_size
        probe = make_env(cfg.env, cfg.seed)   # also rejects continuous action spaces, one line
        self.spec = {"obs_dim": probe.observation_space.shape[0], "n_actions": int(probe.action_space.n),
                     "input_shape": tuple(probe.observation_space.shape), "env": cfg.env}
        probe.close()
        self.envs: List = []

    def _start(self, rank: int) -> None:
        """This worker's environments: seeds differ across envs and ranks, repeat across runs."""
        for e in self.envs:
            e.close()
        base = self.cfg.seed * 100_003 + rank * self.cfg.n_envs
        self.envs = [make_env(self.cfg.env, base + i) for i in range(self.cfg.n_envs)]
        self.obs = np.stack([e.reset(seed=base + i)[0] for i, e in enumerate(self.envs)]).astype(np.float32)
        self.ep_ret = np.zeros(self.cfg.n_envs)
        self.ep_len = np.zeros(self.cfg.n_envs, np.int64)
        self.gen = torch.Generator().manual_seed(base)   # action sampling, independent of global RNG

    def batches(self, rank, world, batch_size):
        """Endless rollout lengths: the work happens in `loss`. `batch_size` may be a callable."""
        self._start(rank)
        size = batch_size if callable(batch_size) else (lambda: batch_size)
        while True:
            yield int(size())

    def loss(self, model, batch):
        """Collect `batch` steps in each environment with the current model; return the A2C loss.

        Returns (loss, env steps, {"episodes": finished episodes, "episode_return" and
        "episode_length": their mean return and length (only when some finished), "entropy": mean
        policy entropy}).
        """
        obs, act, ret, n, extras = self.collect(model, batch)
        loss, entropy = self.a2c_loss(model, obs, act, ret)
        return loss, n, {**extras, "entropy": entropy}

    def collect(self, model, batch):
        """Step every environment `batch` times with the current model (no gradients).

        Returns (observations (T*N, obs_dim), actions (T*N,), n-step returns (T*N,) as float32
        arrays, env steps, {"episodes", and "episode_return" / "episode_length" when some ended}).
        """
        if not self.envs:
            self._start(0)
        T, N, gamma = int(batch), self.cfg.n_envs, self.cfg.gamma
        p = next(model.parameters())
        as_t = lambda x: torch.as_tensor(x).to(p.device, p.dtype)
        obs_buf = np.zeros((T, N, self.obs.shape[1]), np.float32)
        act_buf = np.zeros((T, N), np.int64)
        rew_buf = np.zeros((T, N), np.float32)
        done_buf = np.zeros((T, N), np.float32)
        finished, lengths = [], []
        for t in range(T):
            with torch.no_grad():   # collection only; gradients come from one batched pass below
                logits, _ = model(as_t(self.obs))
                actions = torch.multinomial(F.softmax(logits.float().cpu(), -1), 1, generator=self.gen).squeeze(1).numpy()
            obs_buf[t], act_buf[t] = self.obs, actions
            for i, env in enumerate(self.envs):
                o, r, term, trunc, _ = env.step(int(actions[i]))
                self.ep_ret[i] += r
                self.ep_len[i] += 1
                if trunc and not term:
                    # a time-limit cut is not failure: bootstrap from the value of where it stopped
                    with torch.no_grad():
                        r += gamma * model(as_t(o[None]))[1].item()
                rew_buf[t, i], done_buf[t, i] = r, float(term or trunc)
                if term or trunc:
                    finished.append(self.ep_ret[i])
                    lengths.append(self.ep_len[i])
                    self.ep_ret[i], self.ep_len[i] = 0.0, 0
                    o, _ = env.reset()
                self.obs[i] = o
        with torch.no_grad():
            R = model(as_t(self.obs))[1].float().cpu().numpy()   # bootstrap from the last state
        returns = np.zeros((T, N), np.float32)
        for t in reversed(range(T)):   # n-step discounted returns, cut at episode ends
            R = rew_buf[t] + gamma * (1.0 - done_buf[t]) * R
            returns[t] = R
        extras: Dict[str, float] = {"episodes": len(finished)}
        if finished:
            extras["episode_return"] = float(np.mean(finished))
            extras["episode_length"] = float(np.mean(lengths))
        return obs_buf.reshape(T * N, -1), act_buf.reshape(-1), returns.reshape(-1), T * N, extras

    def a2c_loss(self, model, obs, act, ret):
        """(the A2C loss on transitions (obs, act, n-step return), its mean entropy as a float)."""
        p = next(model.parameters())
        as_t = lambda x: torch.as_tensor(x).to(p.device, p.dtype)
        logits, values = model(as_t(obs))
        ret = as_t(ret)
        dist = torch.distributions.Categorical(logits=logits)
        advantage = (ret - values).detach()   # the critic only baselines the actor, no gradient through it
        policy_loss = -(dist.log_prob(as_t(act).long()) * advantage).mean()
        value_loss = F.mse_loss(values, ret)
        entropy = dist.entropy().mean()
        loss = policy_loss + self.cfg.value_coef * value_loss - self.cfg.entropy_coef * entropy
        return loss, entropy.item()

    @torch.no_grad()
    def evaluate(self, model) -> Dict[str, float]:
        """Mean greedy return over eval_episodes fixed-seed episodes (at most eps x max_steps steps)."""
        p = next(model.parameters())
        was = model.training
        model.eval()
        policy = lambda o: int(model(torch.as_tensor(o[None]).to(p.device, p.dtype))[0].argmax(-1).item())
        env = make_env(self.cfg.env, 10_000)
        try:
            rets = [run_episode(env, policy, seed=10_000 + i, max_steps=self.cfg.eval_max_steps).ret
                    for i in range(self.cfg.eval_episodes)]
        finally:
            env.close()
            model.train(was)
        return {"return": float(np.mean(rets))}

    def to(self, device, dtype):
        """Nothing to move: observations follow the model's device and dtype in `loss`."""
        return self


@task("cartpole", kind="control")
def cartpole_task(cfg, dtype=torch.float32):
    """The control task from a DataConfig (batch_size = rollout length per environment)."""
    ccfg = ControlConfig(env=cfg.env, n_envs=cfg.n_envs, seed=cfg.seed)
    return ControlTask(ccfg, batch_size=cfg.batch_size)
