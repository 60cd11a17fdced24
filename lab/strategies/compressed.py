"""`compressed`: a gradient strategy whose gradients travel through a compressor (chapter 07).

`strategy="compressed", base="async", compressor="topk"` runs exactly what `strategy="async",
compressor="topk"` runs: compression is a knob of every gradient strategy (`sync` all-reduces or
all-gathers the payloads, `ps` / `async` / `ssp` send them to the server, `lab.compression.wire`).
This name lets "compressed" be picked like the other strategies (the panel, the CLI) and insists
on a compressor. `local` averages models, not gradients, so it is not a base.
"""
from . import STRATEGIES

BASES = ("sync", "ps", "async", "ssp")  # strategies that exchange gradients


@STRATEGIES.register("compressed")
def compressed(cfg, ctx):
    """Not a strategy of its own: the base strategy, built with the same config (and compressor)."""
    return STRATEGIES.build(cfg.base, cfg, ctx)
