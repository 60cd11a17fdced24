"""Models, chosen by name: `MODELS.build(name, spec, cfg)` -> nn.Module.

Each factory takes the task's `spec` (input shape, classes, vocabulary, ...) and a ModelConfig,
and declares the task kinds it accepts in `kinds`.
"""
from ..registry import Registry

MODELS = Registry("model")


def model(name: str, kinds=("classification",)):
    """Register a model factory `f(spec: dict, cfg: ModelConfig) -> nn.Module`."""
    def deco(fn):
        fn.kinds = tuple(kinds)
        return MODELS.register(name)(fn)
    return deco


from . import cnn  # noqa: E402,F401
from . import mlp, rnn  # noqa: E402,F401  (registers "mlp", "lstm" and "gru")
from . import actor_critic  # noqa: E402,F401  (registers "actor_critic", chapter 10)
