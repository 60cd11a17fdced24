"""The seeds' models: registered names, accepted task kinds, output shapes and sizes."""
import pytest
import torch

from lab.config import ModelConfig
from lab.errors import ConfigError
from lab.models import MODELS
from lab.tasks import check_compatible

ITOS = list("\n abcdefghijklmnopqrstuvwxyz.")  # 29 characters


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_registered_names_and_kinds():
    assert {"cnn", "mlp", "lstm", "gru"} <= set(MODELS.names())
    assert MODELS.get("mlp").kinds == ("classification",)
    assert MODELS.get("lstm").kinds == MODELS.get("gru").kinds == ("language",)
    check_compatible("digits", "mlp")
    check_compatible("text", "gru")
    for data, model in (("digits", "lstm"), ("text", "mlp"), ("cifar10", "gru")):
        with pytest.raises(ConfigError, match="model"):
            check_compatible(data, model)


def test_cnn_on_32x32_has_the_seeds_122570_parameters():
    m = MODELS.build("cnn", {"input_shape": (3, 32, 32), "n_classes": 10}, ModelConfig())
    assert n_params(m) == 122_570
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("shape, n_in", [((1, 28, 28), 784), ((1, 8, 8), 64), ((3, 32, 32), 3072)])
def test_mlp_flattens_any_input(shape, n_in):
    m = MODELS.build("mlp", {"input_shape": shape, "n_classes": 10}, ModelConfig(name="mlp"))
    assert n_params(m) == n_in * 64 + 64 + 64 * 10 + 10  # 784-64-10 is 50,890
    assert m(torch.zeros(5, *shape)).shape == (5, 10)


@pytest.mark.parametrize("name, gates", [("lstm", 4), ("gru", 3)])
def test_char_rnn_shapes_and_sizes(name, gates):
    m = MODELS.build(name, {"vocab_size": len(ITOS), "itos": ITOS}, ModelConfig(name=name))
    v = len(ITOS)
    rnn = gates * (128 * 64 + 128 * 128 + 2 * 128)  # input and recurrent weights, two biases
    assert n_params(m) == v * 64 + rnn + 128 * v + v  # Embedding 64, RNN 128, Dense vocab
    x = torch.randint(0, v, (3, 17))
    assert m(x).shape == (3, 17, v)
    logits, state = m.step(x)
    more, _ = m.step(x[:, :1], state)  # the state carries on from where it stopped
    assert more.shape == (3, 1, v)
    assert m.itos == ITOS and m.stoi["a"] == ITOS.index("a")
