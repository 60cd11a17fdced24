"""Before a run (notebook side): do the workers sharing a GPU fit in its memory? One line when not.

Kept apart from `lab.devices` (which the engine's `Comm` imports) because it builds the model, as
`lab.train` does, to count its parameters and activations.
"""
from __future__ import annotations

import torch

from .devices import check_fit, estimate_bytes
from .train import build


def activations_per_sample(task, model) -> int:
    """Elements every module outputs per sample, measured on one small batch on the CPU (0 if the
    task cannot make one): what backward keeps alive, roughly."""
    total = [0]

    def count(_m, _i, out):
        total[0] += sum(o.numel() for o in (out if isinstance(out, (tuple, list)) else (out,)) if torch.is_tensor(o))
    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            _, n, _ = task.loss(model, next(task.batches(0, 1, 2)))
        return int(total[0] / max(1, int(n)))
    except Exception:
        return 0
    finally:
        for h in hooks:
            h.remove()


def check_run_fits(cfg, infos) -> None:
    """Before a run (notebook side): one line when the workers sharing a GPU cannot all hold `cfg`'s
    model and batch (`estimate_bytes` against the free memory each engine reported at setup)."""
    on_gpu = {}
    for d in infos or ():
        dev = d.get("device") or "cpu"
        if dev.startswith("cuda"):
            on_gpu.setdefault(dev, []).append(d)
    if not on_gpu:
        return
    task, model, _ = build(cfg, "cpu")
    params = sum(p.numel() for p in model.parameters())
    itemsize = next(model.parameters()).element_size()
    need = estimate_bytes(params, itemsize, cfg.optim.name, cfg.data.batch_size,
                          activations_per_sample=activations_per_sample(task, model))
    for dev, ds in sorted(on_gpu.items()):
        free = ds[0].get("gpu_free_mb")  # what that GPU had free once every engine was set up
        if free is not None:
            check_fit(len(ds), need, int(free * 2**20), dev)
