"""A3C and A2C on the cluster: tuned run configs for the actor-critic (chapter 10, intelligent agents).

Nothing new runs here: the "cartpole" task (`lab.tasks.cartpole`) makes every worker collect its
own rollouts with the current model, so the lab's ordinary strategies become the classic agents.
`sync` averages the workers' gradients every step (A2C: one big synchronous batch of
experience); `async` pushes each worker's gradient to a parameter server without waiting
(A3C: rollouts come from parameters other workers have moved since, and the server records
that staleness). These helpers only hold the settings that were tuned, so the chapter, the
tests and `python -m lab bench agents` share them.

Example:
    >>> from lab import Cluster
    >>> from lab.agents.distributed import a3c_config, a2c_config
    >>> with Cluster.start(workers=2) as cluster:
    ...     a3c = cluster.train(a3c_config(steps=300)).wait()
    ...     a2c = cluster.train(a2c_config(steps=300)).wait()
    >>> a3c.final("return"), a2c.final("return")
"""
from __future__ import annotations

from typing import Optional

from ..config import RunConfig
from ..errors import check

ROLLOUT = 16        # steps per environment per update (data.batch_size); tuned in phase 1
N_ENVS = 8          # environments per worker, stepped in lockstep
LR = 5e-4           # Adam learning rate (1e-3 reaches 195 sooner but the policy swings more afterwards)
CLIP = 0.5          # per-worker gradient-norm clip, applied before the gradient travels
SOLVED = 195.0      # CartPole-v1's classic "solved" mean return


def agent_config(strategy: str, steps: int = 300, *, seed: int = 0, eval_every: int = 25,
                 compressor: Optional[str] = None, name: str = "", runs_dir: str = "runs",
                 env: str = "CartPole-v1", **knobs) -> RunConfig:
    """A RunConfig that trains the actor-critic on `env` with `strategy`.

    Args:
        strategy: "async" (A3C), "sync" (A2C), or any other lab strategy ("ssp", "local", ...).
        steps: updates per worker; each consumes ROLLOUT x N_ENVS = 128 environment steps.
        seed: seeds the initial weights and every worker's environments (plus its rank).
        eval_every: updates between rank 0's greedy evaluations (the `return` metric).
        compressor: optional gradient compressor ("topk", "fp16", ...); None sends gradients whole.
        name: label for plots and tables (default "A3C" / "A2C" / the strategy).
        runs_dir: where the run is saved.
        env: a gymnasium id with a discrete action space.
        **knobs: further dotted or aliased changes, e.g. `lr=5e-4`, `ratio=0.1`, `n_envs=4`.

    Returns:
        a validated-on-start RunConfig; pass it to `cluster.train`.
    """
    check(isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1, "steps", "an integer >= 1", steps)
    cfg = RunConfig(steps=steps, eval_every=eval_every, runs_dir=runs_dir,
                    name=name or {"async": "A3C", "sync": "A2C"}.get(strategy, strategy))
    cfg.data.name, cfg.data.env, cfg.data.seed = "cartpole", env, seed
    cfg.data.batch_size, cfg.data.n_envs = ROLLOUT, N_ENVS
    cfg.model.name = "actor_critic"
    cfg.optim.name, cfg.optim.lr, cfg.optim.clip_grad_norm = "adam", LR, CLIP
    cfg.strategy.name = strategy
    # a checkpoint at every evaluation: after `stop_at`, runs/<id>/checkpoint.pt is the policy that scored
    cfg.checkpoint_every = eval_every
    if compressor:
        cfg.strategy.compression.name = compressor
    return cfg.replace(**knobs) if knobs else cfg


def stop_at(run, target: float = SOLVED):
    """Stop `run` (every worker, same step) once rank 0's greedy `return` reaches `target`.

    The usual protocol for CartPole ("solved" at 195), as `train_a2c(target=...)` and `train_dqn`
    do in one process: an on-policy actor-critic keeps swinging after it has solved the task (its
    greedy return can drop from 500 to 150 and come back), so the run ends on the policy that
    passed the check, not on wherever the swing is when the budget runs out. The check runs
    whenever the notebook polls (`run.wait()` or `run.watch()`), so the run stops a few updates
    later; with `checkpoint_every = eval_every` (the helpers' setting) `checkpoint.pt` holds the
    last evaluated policy.

    Returns:
        the run, for chaining: `stop_at(cluster.train(a3c_config(400))).wait()`.
    """
    asked = []

    def check(run, new):
        if not asked and not run.done and any(r.get("return") is not None and r["return"] >= target for r in new):
            asked.append(run.stop())
    run.subscribe(check)
    return run


def a3c_config(steps: int = 300, **kw) -> RunConfig:
    """A3C: asynchronous actors pushing to a parameter server (`strategy="async"`). See `agent_config`."""
    return agent_config("async", steps, **kw)


def a2c_config(steps: int = 300, **kw) -> RunConfig:
    """A2C: synchronous actors, gradients all-reduced every update (`strategy="sync"`). See `agent_config`."""
    return agent_config("sync", steps, **kw)


def env_steps(run) -> list:
    """[(env steps so far, seconds, return)] at each of rank 0's greedy evaluations.

    Environment steps are summed over all workers up to the evaluation's time (every worker's
    clock starts at the same barrier), so asynchronous workers that ran ahead count as they
    should. This is the x axis on which A3C and A2C compare sample efficiency; seconds compare speed.
    """
    total, out = 0, []
    for r in sorted(run.records, key=lambda r: (r["t"], r["rank"])):
        total += r["n"]
        if r.get("return") is not None:
            out.append((total, r["t"], r["return"]))
    return out
