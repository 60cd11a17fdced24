"""`compressed`: a gradient strategy whose gradients travel through a compressor (chapter 07).

`strategy="compressed", base="async", compressor="topk"` runs exactly what `strategy="async",
compressor="topk"` runs: compression is a knob of every gradient strategy (`sync` all-reduces or
all-gathers the payloads, `ps` / `async` / `ssp` send them to the server, `lab.compression.wire`).
This name lets "compressed" be picked like the other strategies (the panel, the CLI) and insists
on a compressor. `local` averages models, not gradients, so it is not a base.
"""
from . import STRATEGIES, strategy

BASES = ("sync", "ps", "async", "ssp")  # strategies that exchange gradients


@strategy("compressed")
class Compressed:
    """Not a strategy of its own: building it builds the base strategy with the same config."""

    def __new__(cls, cfg, ctx):
        return STRATEGIES.build(cfg.base, cfg, ctx)
