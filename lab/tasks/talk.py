"""Agents that talk: CartPole agents that send each other their experience (chapter 10b).

Every worker is one agent with its own environments, its own observations and its own
actor-critic (the run's strategy is `local` with a period longer than the run: no parameter or
gradient ever travels). Each step an agent collects a short rollout exactly as the "cartpole"
task does, then *tells its peers what happened*: one message per peer, sent with
`Comm.isend` / `Comm.irecv`, holding every transition of the rollout as float32 rows
(observation, action, n-step return). It then takes its A2C step on its own and its peers'
transitions together, in rank order. The "cartpole" task is the same agent that keeps quiet.

Bytes per step per agent (n agents, T rollout steps, N environments, d observation numbers):
    sent = recv = (n - 1) * T * N * (d + 2) * 4      in n - 1 messages each way

The record's `heard` counts the peers' environment steps an agent learned from that step;
`n` stays the agent's own environment steps, so curves over `n` compare agents at the same
number of their own interactions with the world.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from .. import records
from . import task
from .cartpole import ControlConfig, ControlTask

records.declare("heard", "env_steps", None,
                "cartpole_talk: environment steps of the peers' experience this agent learned from this step")

TAG = 17  # the message tag of an experience message (apart from any other point-to-point traffic)


def pack(obs: np.ndarray, act: np.ndarray, ret: np.ndarray) -> torch.Tensor:
    """One message: a (T*N, d + 2) float32 tensor, a row per transition (observation, action, return)."""
    return torch.from_numpy(np.concatenate([obs, act[:, None].astype(np.float32), ret[:, None]], 1)).float()


def unpack(msg: torch.Tensor):
    """(observations, actions, returns) as numpy arrays from a message made by `pack`."""
    m = msg.numpy()
    return m[:, :-2], m[:, -2].astype(np.int64), m[:, -1]


def exchange(comm, msg: torch.Tensor) -> list:
    """Send `msg` to every peer and receive each peer's message of the same shape; returns all
    the messages in rank order (this agent's own at its rank). Every byte goes through `comm`."""
    rank, world = comm.rank, comm.world
    inbox = [msg if r == rank else torch.empty_like(msg) for r in range(world)]
    pending = []
    for r in range(world):
        if r != rank:
            pending.append(comm.isend(msg, r, tag=TAG))
            pending.append(comm.irecv(inbox[r], r, tag=TAG))
    for p in pending:
        p.wait()
    return inbox


class TalkTask(ControlTask):
    """The control task whose agents share each rollout with their peers (module docstring)."""

    def __init__(self, cfg: ControlConfig, batch_size: int = 16):
        super().__init__(cfg, batch_size)
        self.comm = None

    def bind(self, ctx) -> None:
        """Called by the trainer with the worker's context: messages go through its Comm."""
        self.comm = ctx.comm

    def loss(self, model, batch):
        obs, act, ret, n, extras = self.collect(model, batch)
        heard = 0
        if self.comm is not None and self.comm.world > 1:
            inbox = exchange(self.comm, pack(obs, act, ret))
            parts = [unpack(m) for m in inbox]   # rank order: every agent sees the same batch
            obs, act, ret = (np.concatenate(x) for x in zip(*parts))
            heard = len(ret) - n
        loss, entropy = self.a2c_loss(model, obs, act, ret)
        out: Dict[str, float] = {**extras, "entropy": entropy, "heard": heard}
        return loss, n, out


@task("cartpole_talk", kind="control")
def cartpole_talk_task(cfg, dtype=torch.float32):
    """CartPole agents that share their experience (batch_size = rollout length per environment)."""
    return TalkTask(ControlConfig(env=cfg.env, n_envs=cfg.n_envs, seed=cfg.seed), batch_size=cfg.batch_size)
