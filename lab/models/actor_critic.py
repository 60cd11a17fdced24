"""The actor-critic network (chapter 10, intelligent agents), registered as model "actor_critic".

One network, two heads: the *actor* gives policy logits (what to do), the *critic* a value
V(s) (how good the situation is). The "cartpole" task (`lab.tasks.cartpole`) trains it on every
worker; `lab.agents.actor_critic.train_a2c` is the one-process reference.
"""
from __future__ import annotations

import torch
from torch import nn

from . import model

HIDDEN = 64      # width of the bodies; a ModelConfig field could carry it later
SHARED = False   # one body for both heads, or one each (see ActorCritic)


class ActorCritic(nn.Module):
    """A policy head (logits) and a value head (a scalar) on tanh MLP bodies.

    With `shared=False` (the default) each head has its own body: the critic's squared error,
    whose scale grows with the return (up to ~100 on CartPole), then cannot drown the actor's
    gradient in a shared body once gradients are clipped.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = HIDDEN, shared: bool = SHARED):
        super().__init__()
        body = lambda: nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.shared = shared
        self.actor_body = body()
        self.critic_body = self.actor_body if shared else body()
        self.policy = nn.Linear(hidden, n_actions)
        self.value = nn.Linear(hidden, 1)
        # small initial logits: the agent starts close to uniformly random, so it explores
        nn.init.orthogonal_(self.policy.weight, gain=0.01)
        nn.init.zeros_(self.policy.bias)

    def forward(self, obs: torch.Tensor):
        """obs (B, obs_dim) -> (logits (B, n_actions), value (B,))."""
        h = self.actor_body(obs)
        v = h if self.shared else self.critic_body(obs)
        return self.policy(h), self.value(v).squeeze(-1)


@model("actor_critic", kinds=("control",))
def actor_critic(spec, cfg):
    """Factory for the registry: spec carries obs_dim and n_actions (from the control task)."""
    return ActorCritic(spec["obs_dim"], spec["n_actions"])
