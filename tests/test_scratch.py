"""Chapter 01's hand-written backpropagation (lab.scratch) against autograd, and its training."""
import pytest
import torch

from lab.scratch import ACTIVATIONS, ScratchMLP, gradient_norms, tiny_sigmoid_net


def autograd_grads(net, x, y):
    """The same network's gradients from torch.autograd, for reference."""
    leaves = [{k: v.clone().requires_grad_(True) for k, v in p.items()} for p in net.params]
    saved, net.params = net.params, leaves
    out, _ = net.forward(x)
    grads = torch.autograd.grad(net.loss(out, y), [p[k] for p in leaves for k in ("W", "b")])
    net.params = saved
    return grads


def hand_grads(net, x, y):
    out, cache = net.forward(x)
    return [g[k] for g in net.backward(out, cache, y) for k in ("W", "b")]


def test_tiny_sigmoid_example_matches_the_worked_numbers_and_autograd():
    net, x, t = tiny_sigmoid_net()
    out, cache = net.forward(x)
    assert out.tolist()[0] == pytest.approx([0.75136507, 0.772928465], abs=1e-8)
    assert float(net.loss(out, t)) == pytest.approx(0.298371109, abs=1e-9)
    grads = net.backward(out, cache, t)
    assert float(grads[1]["W"][0, 0]) == pytest.approx(0.082167041, abs=1e-9)  # dLoss/dw5
    for h, a in zip(hand_grads(net, x, t), autograd_grads(net, x, t)):
        torch.testing.assert_close(h, a, rtol=0, atol=1e-6)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_784_64_10_backward_equals_autograd(activation):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 784, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (16,), generator=g)
    net = ScratchMLP((784, 64, 10), activation=activation)
    for h, a in zip(hand_grads(net, x, y), autograd_grads(net, x, y)):
        assert h.shape == a.shape
        torch.testing.assert_close(h, a, rtol=0, atol=1e-6)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_activation_derivatives_equal_autograd(activation):
    f, df = ACTIVATIONS[activation]
    z = torch.linspace(-4, 4, 81, dtype=torch.float64).requires_grad_(True)
    (auto,) = torch.autograd.grad(f(z).sum(), z)
    keep = z.detach() != 0  # relu has no derivative at 0
    torch.testing.assert_close(df(z.detach())[keep], auto[keep])


def test_training_steps_reduce_the_loss_on_digits():
    from lab.data.digits import load_digits_arrays
    xtr, ytr, _, _ = load_digits_arrays()
    x, y = xtr.double().reshape(len(xtr), -1), ytr
    net = ScratchMLP((64, 64, 10), activation="relu")
    losses = [net.train_step(x, y, lr=0.5) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]
    assert all(b < a for a, b in zip(losses[:5], losses[1:6]))  # monotone at first (full batch, small lr)


def test_deep_sigmoid_gradients_vanish_and_relu_ones_do_not():
    s, r = gradient_norms("sigmoid", depth=10), gradient_norms("relu", depth=10)
    assert len(s) == len(r) == 11
    assert s[0] / s[-1] < 1e-3   # the first layer barely learns
    assert r[0] / r[-1] > 1e-1   # within a small factor
