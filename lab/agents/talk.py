"""Agents that talk, as ordinary cluster runs: settings and measures for chapter 10b.

One agent per worker, each with its own CartPole environments and its own actor-critic. The
strategy is `local` with a period longer than the run, so no parameter or gradient ever travels
while the run goes: the agents are independent learners. `talk=True` uses the "cartpole_talk"
task (`lab.tasks.talk`): every agent sends each rollout to its peers and learns from all of
them; `talk=False` uses "cartpole", the same agents keeping quiet.

Example:
    >>> from lab import Cluster
    >>> from lab.agents.talk import team_config, learning_curve
    >>> with Cluster.start(workers=3) as cluster:
    ...     quiet = cluster.train(team_config(talk=False)).wait()
    ...     talking = cluster.train(team_config(talk=True)).wait()
    >>> learning_curve(talking)[-1], learning_curve(quiet)[-1]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from .. import knobs
from ..config import RunConfig
from ..knobs import knob


@dataclass
class Team:
    """The team's settings; `team_config` checks them (a bad value is a one-line ConfigError)."""
    steps: int = knob(150, "updates per agent", range=(1, None))
    rollout: int = knob(16, "steps per environment per update (data.batch_size)", range=(1, 1024))
    n_envs: int = knob(2, "environments per agent (data.n_envs)", range=(1, 1024))
    lr: float = knob(1e-3, "each agent's Adam learning rate", range="(0, 1]")
    seed: int = knob(0, "initial weights (the same for every agent) and environment seeds")
    eval_every: int = knob(50, "updates between agent 0's greedy evaluations (the `return` metric)",
                           range=(1, None))


def team_config(talk: bool, steps: int = 150, *, rollout: int = 16, n_envs: int = 2, lr: float = 1e-3,
                seed: int = 0, eval_every: int = 50, name: str = "", runs_dir: str = "runs", **changes) -> RunConfig:
    """A RunConfig for a team of independent actor-critic agents, one per worker (`cluster.train` it).

    Args:
        talk: True: agents send every rollout to their peers and learn from all ("cartpole_talk");
            False: the same agents without messages ("cartpole").
        steps, rollout, n_envs, lr, seed, eval_every: see `Team`; each agent steps its environments
            rollout x n_envs times per update.
        name: the run's label (default "talking" / "quiet").
        **changes: further dotted or aliased knobs, e.g. `clip_grad_norm=1.0`.
    """
    if not isinstance(talk, bool):
        from ..errors import ConfigError
        raise ConfigError("talk", "True or False", talk)
    knobs.validate(Team(steps, rollout, n_envs, lr, seed, eval_every))
    cfg = RunConfig(steps=steps, eval_every=eval_every, checkpoint_every=10**9, runs_dir=runs_dir,
                    name=name or ("talking" if talk else "quiet"))
    cfg.data.name = "cartpole_talk" if talk else "cartpole"
    cfg.data.batch_size, cfg.data.n_envs, cfg.data.seed = rollout, n_envs, seed
    cfg.model.name = "actor_critic"
    cfg.optim.name, cfg.optim.lr, cfg.optim.clip_grad_norm = "adam", lr, 0.5
    # independent learners: `local` never averages during the run (its period is past the end)
    cfg.strategy.name, cfg.strategy.period = "local", steps + 1
    return cfg.replace(**changes) if changes else cfg


def episode_returns(run) -> List[Tuple[int, int, float]]:
    """[(rank, own env steps so far, mean return of the episodes that ended then)] from every agent."""
    out, seen = [], {}
    for r in sorted(run.records, key=lambda r: (r["rank"], r["step"])):
        seen[r["rank"]] = seen.get(r["rank"], 0) + r["n"]
        if r.get("episode_return") is not None:
            out.append((r["rank"], seen[r["rank"]], r["episode_return"]))
    return out


def learning_curve(run, bins: int = 10) -> List[Tuple[float, float]]:
    """[(env steps per agent, mean episode return over all agents)] in `bins` equal slices of the
    budget: the team's reward against each agent's own interactions with the world."""
    rows = episode_returns(run)
    if not rows:
        return []
    top = max(s for _, s, _ in rows)
    edges = np.linspace(0, top, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        vals = [ret for _, s, ret in rows if lo < s <= hi]
        if vals:
            out.append((float(hi), float(np.mean(vals))))
    return out


def late_return(run, fraction: float = 0.3) -> float:
    """Mean episode return over all agents in the last `fraction` of each agent's env-step budget."""
    rows = episode_returns(run)
    top = max(s for _, s, _ in rows)
    return float(np.mean([ret for _, s, ret in rows if s > (1 - fraction) * top]))


def bytes_per_step(run) -> dict:
    """{rank: mean bytes sent per step} from the records (the comm ledger)."""
    per = {}
    for r in run.records:
        per.setdefault(r["rank"], []).append(r["bytes_sent"])
    return {k: float(np.mean(v)) for k, v in sorted(per.items())}


def message_bytes(agents: int, rollout: int, n_envs: int, obs_dim: int = 4) -> int:
    """The formula: bytes one agent sends per step, (n-1) peers x T*N rows x (d + 2) float32."""
    return (agents - 1) * rollout * n_envs * (obs_dim + 2) * 4
