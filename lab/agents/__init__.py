"""Intelligent agents (chapter 10): the perceive-decide-act-evaluate loop, DQN and actor-critic.

`lab.envs` holds the loop and environments (re-exported here; the "cartpole" task plays them
too, so they sit below tasks), `lab.agents.dqn` the single-process DQN, `lab.agents.actor_critic`
the single-process A2C reference trainer for the actor-critic model (`lab.models.actor_critic`).
The distributed trainer sees the actor-critic through the "cartpole" task in
`lab.tasks.cartpole`, so `sync` trains it as A2C and `async` as A3C; `lab.agents.distributed`
holds the tuned run configs for both (`a3c_config`, `a2c_config`) and `stop_at`, which ends a
run once the agent has solved the task.
"""
from ..envs import (DEFAULT_ENV, Episode, evaluate_policy, greedy_policy, make_env,  # noqa: F401
                    random_policy, run_episode)
