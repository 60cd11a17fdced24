"""`compressed`: a gradient strategy whose gradients travel through a compressor (chapter 07).

`strategy="compressed", base="async", compressor="topk"` runs exactly what `strategy="async",
compressor="topk"` runs: compression is a knob of every strategy that exchanges gradients (kind
"gradients": `sync` all-reduces or all-gathers the payloads; kind "server": `ps` / `async` / `ssp`
send them to the server, `lab.compression.wire`). This name lets "compressed" be picked like the
other strategies (the panel, the CLI) and insists on a compressor. Strategies of kind
"parameters" (`local`) average models, not gradients, so they are no base.
"""
from dataclasses import dataclass

from ..knobs import knob
from . import STRATEGIES

GRADIENT_KINDS = ("gradients", "server")


def bases() -> tuple:
    """The registered strategies a compressor can sit on: those whose kind exchanges gradients."""
    return tuple(n for n in STRATEGIES.names() if getattr(STRATEGIES.get(n), "kind", None) in GRADIENT_KINDS)


@dataclass
class Options:
    base: str = knob("sync", "the strategy whose gradients travel compressed (kind gradients or server)",
                     choices=bases, live=True)


def compressed(cfg, ctx):
    """Not a strategy of its own: the base strategy, built with the same config (and compressor)."""
    return STRATEGIES.build(cfg.base, cfg, ctx)


compressed.Options = Options  # its one knob joins StrategyConfig (lab.knobs.compose)
STRATEGIES.register("compressed")(compressed)
