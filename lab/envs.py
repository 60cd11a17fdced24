"""Environments and the agent loop (chapter 10, intelligent agents; `lab.agents` re-exports them).

An agent repeats four things until the episode ends: it *perceives* (reads the observation),
*decides* (its policy maps the observation to an action), *acts* (`env.step`) and *evaluates*
(collects the reward and adds it to the return). `run_episode` is exactly that loop; DQN and
actor-critic differ only in the policy they plug in and in how they learn from the rewards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np

from .errors import check

DEFAULT_ENV = "CartPole-v1"   # embedded in gymnasium: no download, solved in about a minute on a CPU

Policy = Callable[[np.ndarray], int]   # observation -> action


def make_env(name: str = DEFAULT_ENV, seed: Optional[int] = None, render_mode: Optional[str] = None):
    """A gymnasium environment with a discrete action space, seeded for reproducibility.

    Args:
        name: a gymnasium id such as "CartPole-v1" or "Acrobot-v1".
        seed: seeds the first `reset` and the action space (so `action_space.sample()` repeats).
        render_mode: None, or "rgb_array" to get frames (set SDL_VIDEODRIVER=dummy when headless).

    Returns:
        the environment, already reset once with `seed` (later resets continue its RNG).

    Raises:
        ConfigError: unknown id, or an action space that is not Discrete (e.g. Pendulum-v1):
        both agents here pick one of n actions.

    Example:
        >>> env = make_env("CartPole-v1", seed=0)
        >>> env.action_space.n
        2
    """
    import gymnasium as gym
    check(isinstance(name, str) and name in gym.registry, "env", "a registered gymnasium environment id", name)
    env = gym.make(name, render_mode=render_mode)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        env.close()
        check(False, "env", "an environment with a discrete action space", name)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


@dataclass
class Episode:
    """What one pass through the agent loop produced."""
    ret: float = 0.0                                   # sum of rewards (undiscounted return)
    length: int = 0                                    # environment steps taken
    frames: List[np.ndarray] = field(default_factory=list)   # rgb frames (H, W, 3) when asked for


def run_episode(env, policy: Policy, seed: Optional[int] = None, max_steps: Optional[int] = None,
                frames: bool = False) -> Episode:
    """Run one episode: perceive, decide, act, evaluate, until the episode ends.

    Args:
        env: a gymnasium environment (see `make_env`); needs render_mode="rgb_array" for frames.
        policy: observation -> action (an int).
        seed: reseed this episode's reset (None continues the environment's RNG).
        max_steps: stop early after this many steps (bounds evaluation cost).
        frames: also record `env.render()` after the reset and after each step.

    Returns:
        Episode(ret, length, frames).

    Example:
        >>> ep = run_episode(make_env(seed=0), random_policy(make_env()))
        >>> ep.length > 0
        True
    """
    obs, _ = env.reset(seed=seed)
    ep = Episode()
    if frames:
        ep.frames.append(env.render())
    while max_steps is None or ep.length < max_steps:
        action = policy(obs)                                                   # decide
        obs, reward, terminated, truncated, _ = env.step(action)              # act, then perceive
        ep.ret += float(reward)                                                # evaluate
        ep.length += 1
        if frames:
            ep.frames.append(env.render())
        if terminated or truncated:
            break
    return ep


def random_policy(env) -> Policy:
    """The baseline every agent must beat: a uniformly random action (from the seeded action space)."""
    return lambda obs: int(env.action_space.sample())


def greedy_policy(q_or_logits_fn: Callable) -> Policy:
    """Act on the argmax of a network's output (Q-values or policy logits) for one observation."""
    import torch

    @torch.no_grad()
    def act(obs):
        out = q_or_logits_fn(torch.as_tensor(np.asarray(obs), dtype=torch.float32)[None])
        out = out[0] if isinstance(out, tuple) else out   # actor-critic returns (logits, value)
        return int(out.argmax(-1).item())
    return act


def evaluate_policy(env_name: str, policy: Policy, episodes: int = 20, seed: int = 10_000,
                    max_steps: Optional[int] = None) -> float:
    """Mean return of `policy` over `episodes` episodes, seeds seed, seed+1, ...

    Evaluation seeds default far from training seeds so the agent is tested on starts it has
    not been tuned on.

    Example:
        >>> env = make_env()
        >>> evaluate_policy("CartPole-v1", random_policy(env), episodes=5) < 50
        True
    """
    check(isinstance(episodes, int) and episodes >= 1, "episodes", "an integer >= 1", episodes)
    env = make_env(env_name, seed)
    try:
        return float(np.mean([run_episode(env, policy, seed=seed + i, max_steps=max_steps).ret
                              for i in range(episodes)]))
    finally:
        env.close()
