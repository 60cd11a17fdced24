"""Chapter 10's hand-written REINFORCE loss (in the notebook) against torch.distributions, and its helpers."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from lab.agents import make_env
from lab.agents.reinforce import play, returns_to_go
from lab.errors import ConfigError

CHAPTER = Path(__file__).resolve().parent.parent / "notebooks" / "10_intelligent_agents.ipynb"


def chapter_loss():
    """The `reinforce_loss` the chapter defines, executed from the notebook's own cell."""
    cells = ["".join(c["source"]) for c in json.loads(CHAPTER.read_text())["cells"] if c["cell_type"] == "code"]
    src = [c for c in cells if c.lstrip().startswith("def reinforce_loss")]
    assert len(src) == 1, "chapter 10 must define reinforce_loss in one cell of its own"
    ns = {}
    exec(src[0], ns)
    return ns["reinforce_loss"]


def test_hand_written_loss_and_gradient_match_categorical_log_prob():
    reinforce_loss = chapter_loss()
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    obs = torch.randn(50, 4, generator=g, dtype=torch.float64)
    actions = torch.randint(0, 3, (50,), generator=g)
    adv = torch.randn(50, generator=g, dtype=torch.float64)

    ours = reinforce_loss(net(obs), actions, adv)
    ours_grad = torch.autograd.grad(ours, list(net.parameters()))
    ref = -(torch.distributions.Categorical(logits=net(obs)).log_prob(actions) * adv).mean()
    ref_grad = torch.autograd.grad(ref, list(net.parameters()))
    assert abs(ours.item() - ref.item()) < 1e-12
    assert max((a - b).abs().max().item() for a, b in zip(ours_grad, ref_grad)) < 1e-12

    # the advantages only weigh the log-probabilities: no gradient flows into them
    adv_p = adv.clone().requires_grad_(True)
    reinforce_loss(net(obs), actions, adv_p).backward()
    assert adv_p.grad is None

    # and the direction is right: a step against the loss makes positive-advantage actions likelier
    logits = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    reinforce_loss(logits, torch.tensor([2]), torch.tensor([1.0], dtype=torch.float64)).backward()
    assert logits.grad[0, 2] < 0 < logits.grad[0, 0]


def test_returns_to_go_against_the_definition():
    rewards, gamma = [1.0, 0.0, 2.0, -1.0, 3.0], 0.9
    want = [sum(gamma ** k * r for k, r in enumerate(rewards[t:])) for t in range(len(rewards))]
    assert torch.allclose(returns_to_go(rewards, gamma), torch.tensor(want), atol=1e-6)
    with pytest.raises(ConfigError):
        returns_to_go(rewards, 1.5)


def test_play_shapes_and_repeatability():
    env = make_env("CartPole-v1", seed=0)
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    obs, act, ret, eps = play(env, policy, episodes=3, seed=5)
    obs2, act2, _, eps2 = play(env, policy, episodes=3, seed=5)
    env.close()
    assert obs.shape == (len(act), 4) and ret.shape == act.shape and len(eps) == 3
    assert sum(eps) == len(act)  # CartPole: +1 a step
    assert torch.equal(act, act2) and eps == eps2 and torch.equal(obs, obs2)
