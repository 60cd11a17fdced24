"""A single-process A2C trainer for the actor-critic (chapter 10, intelligent agents).

The network (`lab.models.actor_critic`) has two heads: the *actor* gives policy logits (what to
do), the *critic* a value V(s) (how good the situation is). The critic's value turns a noisy return into an advantage
(return - V(s)): the actor is pushed towards actions that did better than expected. The
distributed trainer runs the same model through the "cartpole" task (`lab.tasks.cartpole`):
`sync` averages gradients every step (A2C), `async` applies them to a parameter server without
waiting (A3C). `train_a2c` is the one-process reference the chapter compares them with.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from ..errors import check


def train_a2c(task, net: nn.Module, steps: int = 300, lr: float = 1e-3, rollout: Optional[int] = None,
              eval_every: int = 50, target: Optional[float] = None, max_grad_norm: float = 0.5,
              callback: Optional[Callable[[Dict], None]] = None) -> List[Dict]:
    """Single-process A2C through the Task protocol: the reference for the distributed runs.

    Exactly what one worker of the `sync` strategy does, with world = 1: take a batch from
    `task.batches`, get the A2C loss from `task.loss` (which collects a fresh rollout with the
    current network), backpropagate, clip, step.

    Args:
        task: a control task (`lab.tasks.cartpole.ControlTask`).
        net: the actor-critic (`MODELS.build("actor_critic", task.spec, cfg)`).
        steps: updates; each consumes rollout x task.cfg.n_envs environment steps.
        lr: Adam learning rate.
        rollout: steps per environment per update (default: the task's batch size, 16 if unset).
        eval_every: updates between greedy evaluations (`task.evaluate`).
        target: stop early once a greedy evaluation reaches this mean return.
        max_grad_norm: gradient clipping, the usual A2C guard against rare huge policy steps.
        callback: called with every record as it is made.

    Returns:
        history: per update {"kind": "step", "step", "loss", "env_steps", "time", ...task extras};
        per evaluation {"kind": "eval", "step", "env_steps", "return", "time"}; an evaluation always
        ends the list.

    Example:
        >>> from lab.tasks import TASKS; from lab.models import MODELS
        >>> from lab.config import DataConfig, ModelConfig
        >>> task = TASKS.build("cartpole", DataConfig(name="cartpole", batch_size=16))
        >>> net = MODELS.build("actor_critic", task.spec, ModelConfig(name="actor_critic"))
        >>> history = train_a2c(task, net, steps=300)
    """
    check(isinstance(steps, int) and steps >= 1, "steps", "an integer >= 1", steps)
    check(isinstance(lr, (int, float)) and 0 < lr <= 1, "lr", "a number in (0, 1]", lr)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    stream = task.batches(0, 1, rollout or getattr(task, "batch_size", 16))
    history: List[Dict] = []
    t0, env_steps = time.perf_counter(), 0

    def emit(rec):
        history.append(rec)
        if callback:
            callback(rec)

    for step in range(1, steps + 1):
        loss, n, extras = task.loss(net, next(stream))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), max_grad_norm)
        opt.step()
        env_steps += n
        emit({"kind": "step", "step": step, "loss": loss.item(), "env_steps": env_steps,
              "time": time.perf_counter() - t0, **extras})
        if step % eval_every == 0 or step == steps:
            ret = task.evaluate(net)["return"]
            emit({"kind": "eval", "step": step, "env_steps": env_steps, "return": ret, "time": time.perf_counter() - t0})
            if target is not None and ret >= target:
                break
    return history
