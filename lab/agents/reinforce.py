"""Playing episodes for REINFORCE (chapter 10, policy gradient): the bookkeeping, not the lesson.

The chapter writes REINFORCE's loss by hand (log pi(a_t | s_t) times the advantage, five lines);
these helpers only collect what that loss needs: the states seen, the actions sampled from the
policy, and each step's discounted return-to-go G_t = r_t + gamma G_{t+1}.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import check


def returns_to_go(rewards: Sequence[float], gamma: float) -> torch.Tensor:
    """G_t = sum_k gamma^k r_{t+k} for every step t of one episode, computed backwards.

    Example:
        >>> returns_to_go([1.0, 1.0, 1.0], 0.5)
        tensor([1.7500, 1.5000, 1.0000])
    """
    check(0 <= gamma <= 1, "gamma", "a number in [0, 1]", gamma)
    out, g = [], 0.0
    for r in reversed(list(rewards)):
        g = float(r) + gamma * g
        out.append(g)
    return torch.tensor(out[::-1], dtype=torch.float32)


def play(env, policy: torch.nn.Module, episodes: int, gamma: float = 0.99, seed: int = 0,
         max_steps: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List[float]]:
    """Play `episodes` episodes, sampling actions from softmax(policy(obs)).

    Returns:
        (obs (T, obs_dim), actions (T,), returns-to-go (T,), the episodes' undiscounted returns),
        T the steps of all episodes together. Episode i starts from `env.reset(seed=seed + i)` and
        the actions are drawn with a generator seeded by `seed`, so a call repeats exactly.
    """
    check(isinstance(episodes, int) and episodes >= 1, "episodes", "an integer >= 1", episodes)
    g = torch.Generator().manual_seed(seed)
    all_obs, all_act, all_ret, ep_returns = [], [], [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        rewards, t = [], 0
        while True:
            x = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
            with torch.no_grad():
                probs = torch.softmax(policy(x[None])[0], -1)
            a = int(torch.multinomial(probs, 1, generator=g))
            all_obs.append(x)
            all_act.append(a)
            obs, r, terminated, truncated, _ = env.step(a)
            rewards.append(float(r))
            t += 1
            if terminated or truncated or (max_steps is not None and t >= max_steps):
                break
        all_ret.append(returns_to_go(rewards, gamma))
        ep_returns.append(float(sum(rewards)))
    return torch.stack(all_obs), torch.tensor(all_act), torch.cat(all_ret), ep_returns
