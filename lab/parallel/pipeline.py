"""Pipeline parallelism, GPipe-style, for the seeds' CNN split in two stages (chapter 09).

Rank 0 holds the convolutions, rank 1 the dense layers. A batch is cut into `micro` micro-batches:
rank 0 runs each forward and sends the activation on; rank 1 finishes it and computes the loss;
then the backward passes flow back, gradients of the activations travelling the other way. Weights'
gradients accumulate over the micro-batches, so one optimizer step equals the unsplit model's.
With `micro = 1` this is naive model parallelism: one stage always idles. The fraction idle is
the *bubble*, (stages - 1) / (micro + stages - 1) for equal stages.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F


def bubble(stages: int, micro: int) -> float:
    """The idle fraction of a GPipe schedule with equal stages."""
    return (stages - 1) / (micro + stages - 1)


def engine_run(micro: int = 4, batch: int = 64, seed: int = 0) -> dict:
    """Runs on both engines of a 2-worker cluster: one pipelined step, checked against one process.

    Returns this rank's largest gradient difference from the unsplit model and its timeline
    (start, end, kind, micro-batch) for a Gantt chart.
    """
    import torch.distributed as dist
    from lab.config import RunConfig
    from lab.train import build
    rank = dist.get_rank()
    cfg = RunConfig().replace(**{"model.dtype": "float64", "model.dropout": 0.0, "data.seed": seed})
    task, model, _ = build(cfg)
    x, y = next(task.batches(0, 1, batch))
    ref = _grads(model, x, y)  # the reference: the whole model on the whole batch, in this process
    model.zero_grad()
    stage = model.features if rank == 0 else model.classifier
    xs, ys = x.chunk(micro), y.chunk(micro)
    shape = model.features(xs[0][:1]).shape[1:]
    t0, timeline, kept = time.perf_counter(), [], []
    for i in range(micro):                       # forwards, micro-batch after micro-batch
        s = time.perf_counter() - t0
        if rank == 0:
            out = stage(xs[i])
            dist.send(out.detach().contiguous(), 1)
            kept.append(out)
        else:
            a_in = torch.empty((len(xs[i]), *shape), dtype=x.dtype)
            dist.recv(a_in, 0)
            a_in.requires_grad_(True)
            # the sum over micro-batches of these losses is the whole batch's mean loss
            kept.append((a_in, F.cross_entropy(stage(a_in), ys[i], reduction="sum") / batch))
        timeline.append((s, time.perf_counter() - t0, "forward", i))
    for i in reversed(range(micro)):             # backwards, last micro-batch first
        s = time.perf_counter() - t0
        if rank == 1:
            a_in, loss = kept[i]
            loss.backward()
            dist.send(a_in.grad.contiguous(), 0)
        else:
            g = torch.empty(kept[i].shape, dtype=kept[i].dtype)
            dist.recv(g, 1)
            kept[i].backward(g)
        timeline.append((s, time.perf_counter() - t0, "backward", i))
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    diff = max((grads[n] - ref[n]).abs().max().item() for n in grads)
    return {"rank": rank, "grad_diff": diff, "timeline": timeline,
            "params": sum(p.numel() for p in stage.parameters())}


def _grads(model, x, y):
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}
