"""The training loop one worker runs (on an engine, in a background thread).

It knows nothing about the problem (`lab.tasks`), the model (`lab.models`) or how gradients
travel (`lab.strategies`): it asks the task for a loss, backpropagates, hands over to the
strategy, and emits one record per step through `emit` (minGPT-style callback). Changes made
while the run goes (`lab.control`) are applied at step boundaries, the same step on every worker.
"""
from __future__ import annotations

import copy
import time
from typing import Callable, Optional

import torch

from . import checkpoints, records
from .config import RunConfig, set_path
from .control import ControlPoint
from .devices import checked, step_figures as device_figures
from .comm import add_counters as _add
from .compression.owner import Compression
from .models import MODELS
from .optim import lr_at, make_optimizer, set_lr
from .strategies import STRATEGIES
from .strategies.base import WorkerContext
from .tasks import TASKS

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def worker_seed(seed: int, rank: int) -> int:
    """The torch seed worker `rank` trains with after the shared initialisation (seeded by `seed`)."""
    return seed + 1 + rank


def build(cfg: RunConfig, device="cpu"):
    """(task, model, optimizer) for a config, identically initialised on every worker."""
    dtype = DTYPES[cfg.model.dtype]
    task = TASKS.build(cfg.data.name, cfg.data, dtype)
    if hasattr(task, "to"):
        task = task.to(device, dtype)
    torch.manual_seed(cfg.data.seed)  # same initial weights on every worker
    model = MODELS.build(cfg.model.name, task.spec, cfg.model).to(device, dtype)
    return task, model, make_optimizer(model, cfg.optim)


class Trainer:
    """One worker's training run.

    Args:
        cfg: the run's config (this worker keeps its own copy; live changes edit it).
        ctx: the worker's context (rank, world, device, comm, store).
        emit: called with each record (a dict) as soon as it exists.
        control: the worker's ControlPoint (None: no live changes, e.g. in-process tests).
        on_checkpoint: called with this worker's checkpoint piece (see `checkpoint`) every
            `checkpoint_every` steps and at the last step, on every rank.
        resume: a checkpoint to continue from (this worker's piece, or a whole checkpoint from
            `lab.checkpoints.combine`, from which it takes its own): weights, optimizer state,
            step, the strategy's state (loaded after `attach`) and the compression state.
    """

    def __init__(self, cfg: RunConfig, ctx: WorkerContext, emit: Callable[[dict], None],
                 control: Optional[ControlPoint] = None, on_checkpoint: Optional[Callable[[dict], None]] = None,
                 resume: Optional[dict] = None):
        self.cfg = RunConfig.from_dict(cfg.to_dict())
        self.ctx, self.emit, self.control = ctx, emit, control
        self.on_checkpoint = on_checkpoint
        self.task, self.model, self.optimizer = build(self.cfg, ctx.device)
        if hasattr(self.task, "bind"):  # a task whose agents talk to their peers (lab.tasks.talk) uses this comm
            self.task.bind(ctx)
        torch.manual_seed(worker_seed(self.cfg.data.seed, ctx.rank))  # different dropout masks per worker
        ctx.slowdown = self.cfg.slowdown_of(ctx.rank)
        ctx.local_clip = self.cfg.optim.clip_grad_norm  # (sync overlaps the all-reduce with backward only without)
        ctx.comm.link = self.cfg.link
        ctx.compression = Compression(self.cfg.strategy.compression)  # one per worker, kept across switches
        # (device-check mode on a CPU worker: tensors it makes without a device fail the check, lab.devices)
        self.strategy = checked(STRATEGIES.build(self.cfg.strategy.name, self.cfg.strategy, ctx), ctx, self.optimizer)
        self.paused = self.stopped = False
        self._carry: dict = {}           # counters a detached strategy accrued after its last record
        self.after_last_step: dict = {}  # the same, for the strategy running at the end
        self.start_step = 0
        self._resume_strategy: Optional[dict] = None  # loaded into the strategy after attach
        if resume is not None:
            resume = checkpoints.piece(resume, ctx.rank, ctx.world)
            self.model.load_state_dict(resume["model"])
            self.optimizer.load_state_dict(resume["optimizer"])
            self.start_step = int(resume["step"])
            ctx.compression.load_state_dict(resume.get("compression") or {})
            checkpoints.set_rng(resume.get("rng"), ctx.device)  # dropout masks continue as if never stopped
            saved = resume.get("strategy") or {}
            if saved.get("name") == self.cfg.strategy.name:  # (resumed under another strategy: start it fresh)
                self._resume_strategy = saved.get("state") or {}
        self.step = self.start_step
        self.worker_id = ctx.rank   # records' `rank`: kept when an elastic run re-forms its group
        self._marks: dict = {}      # fields for the next record (lab.elastic: a membership change)
        self.elastic = None
        if self.cfg.elastic:        # survives a dead worker (lab.elastic); None outside a cluster
            from .elastic import guard
            self.elastic = guard(self)

    # -- live changes -------------------------------------------------------------------------
    def apply(self, changes: dict) -> None:
        """Apply one agreed change set (called at the same step on every worker)."""
        strategy_before = copy.deepcopy(self.cfg.strategy)
        for key, value in changes.items():
            if key == "_pause":
                self.paused = bool(value)
            elif key == "_stop":
                self.stopped = True
            elif key == "slowdown":
                self.cfg.slowdown = list(value)
            elif key == "link_mbps":
                pass  # a host's real link: the notebook changes it (lab.hosts); recorded here as a change
            elif key == "_members" and self.elastic is not None:
                self.elastic.regroup(value)  # workers join an elastic run here (lab.elastic.add_workers)
            else:
                set_path(self.cfg, key, value)
        for g in self.optimizer.param_groups:  # lr: the loop sets it from the schedule every step
            if "momentum" in g and self.cfg.optim.name == "momentum":
                g["momentum"] = self.cfg.optim.momentum
        self.ctx.slowdown = self.cfg.slowdown_of(self.ctx.rank)
        self.ctx.local_clip = self.cfg.optim.clip_grad_norm
        self.ctx.comm.link = self.cfg.link  # the same object live changes edit, as at start
        # residuals are kept, reset or flushed (CompressionConfig.on_switch)
        self.ctx.compression.switch(self.cfg.strategy.compression)
        if self.cfg.strategy != strategy_before:
            # every worker is at this same step, so detach/attach may use collectives
            self.strategy.detach()
            self._carry = _add(self._carry, self.strategy.unreported())  # into this step's record
            self.strategy = checked(STRATEGIES.build(self.cfg.strategy.name, self.cfg.strategy, self.ctx), self.ctx,
                                    self.optimizer)
            self.strategy.attach(self.model, self.optimizer)

    def _boundary(self, step: int, proceed: bool = True) -> list:
        """Apply the changes due before `step`; with `proceed`, then start computing it (an elastic
        run's worker that did all its steps stays at the end's boundary: `lab.elastic.Guard.hold`)."""
        applied = []
        if self.control is None:
            return applied
        while True:
            for changes in self.control.boundary(step, idle=self.paused):
                self.apply(changes)
                applied.append(changes)
            if not self.paused or self.stopped:
                break
        if proceed:
            self.control.proceed(step)
        return applied

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> None:
        cfg, ctx, comm = self.cfg, self.ctx, self.ctx.comm
        joining = self.elastic is not None and self.elastic.joining
        if joining:  # a newcomer to an elastic run: group, state, step from a live peer; attaches the strategy
            self.elastic.join()
            comm = ctx.comm
        else:
            self.strategy.attach(self.model, self.optimizer)
        if self._resume_strategy is not None:  # before the barrier: no worker has stepped yet
            self.strategy.load_state_dict(self._resume_strategy)
        batches = self.task.batches(ctx.rank, ctx.world, lambda: self.cfg.data.batch_size)
        for _ in range(self.start_step):  # a resumed run sees the batches it would have seen
            next(batches)
        self._batches = batches
        if not joining:
            comm.barrier()  # a common start, so every worker's clock `t` starts together
        start = time.perf_counter()
        self.model.train()
        if self.elastic is not None:
            self.elastic.begin()
        step = self.start_step
        while True:   # (an elastic run's last detach may meet a death too: it recovers and ends again)
            step = self._loop(step, start)
            try:
                if self.elastic is not None and not self.stopped:
                    step = self.elastic.hold(step)  # async: others still train, and may re-form with it
                comm = ctx.comm
                comm.ledger.reset()  # what ending costs (a final averaging, the server's state broadcast) is
                self.strategy.detach()  # on the wire too: it goes in the run's after_last_step, not lost
                break
            except Exception as e:
                if self.elastic is None:
                    raise
                step = self.elastic.recover(step, e)
        spent = comm.ledger.spent()
        self.after_last_step = _add(_add(self.strategy.unreported(), spent), self._carry)   # (_carry: e.g. a
        # state handed over when an elastic run re-formed during the last detach)

    def _loop(self, step: int, start: float) -> int:
        """Steps from `step` to the end (or a stop); returns the step it ended at."""
        cfg, ctx, comm = self.cfg, self.ctx, self.ctx.comm
        batches = self._batches
        while step < cfg.steps:
            try:  # an elastic run (lab.elastic) recovers from a failed step below
                self.step = step
                if self.elastic is not None:
                    self.elastic.check()  # the membership changed: re-form before this step
                comm.ledger.reset()
                changes = self._boundary(step)
                batches, comm = self._batches, ctx.comm  # (an elastic run may re-form its group at a boundary)
                if self.stopped:  # the last checkpoint stays the last one taken every `checkpoint_every`
                    break
                if changes:  # a switch's own traffic (e.g. the server's state broadcast) is this step's
                    lg = comm.ledger
                    self._carry = _add(self._carry, lg.spent())
                set_lr(self.optimizer, lr_at(cfg.optim, step, cfg.steps, cfg.data.batch_size * ctx.world))  # schedule, live lr, scale_lr
                comm.ledger.reset()
                clock = comm.clock  # on CUDA it synchronises first: compute is the kernels', not their launches'
                t0 = clock.now()
                loss, n, extras = self.task.loss(self.model, next(batches))
                self.optimizer.zero_grad(set_to_none=False)
                loss.backward()
                if cfg.optim.clip_grad_norm > 0:  # local clipping, before the gradient travels (as in A3C)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.clip_grad_norm)
                compute = clock.now() - t0
                if ctx.slowdown > 1.0:
                    time.sleep((ctx.slowdown - 1.0) * compute)  # a straggler: this worker is `slowdown`x slower
                    compute = clock.now() - t0
                info = self.strategy.step(step)
                step_s = clock.now() - t0
                if self.elastic is not None:
                    self.elastic.after_step(step, info)
                self.emit(self._record(step, start, loss, n, compute, step_s, info, extras, changes))
                self._maybe_checkpoint(step)
            except Exception as e:
                if self.elastic is None:
                    raise
                step = self.elastic.recover(step, e)  # a worker died: go on with the others (lab.elastic)
                batches, comm = self._batches, ctx.comm
                continue
            step += 1
        return step

    def _record(self, step, start, loss, n, compute, step_s, info, extras, changes) -> dict:
        ctx, lg, cfg = self.ctx, self.ctx.comm.ledger, self.cfg
        rec = {
            "rank": self.worker_id, "step": step, "t": time.perf_counter() - start, "wall": time.time(),
            "loss": float(loss.detach()), "n": int(n), "unit": self.task.unit,
            "throughput": n / step_s if step_s > 0 else 0.0, "step_s": step_s, "compute_s": compute,
            "lr": self.optimizer.param_groups[0]["lr"], "strategy": cfg.strategy.name, "compressor": cfg.strategy.compression.name,
            "staleness": info.staleness,
            "compression_ratio": (lg.raw_bytes / lg.payload_bytes) if lg.payload_bytes else None,
            **lg.as_dict(), "wire_bytes_sent": lg.bytes_sent + lg.framing_bytes, **extras, **info.extra,
        }
        if changes:
            rec["changes"] = changes
        if self._marks:  # e.g. an elastic run's membership change (lab.elastic)
            rec.update(self._marks)
            self._marks = {}
        if ctx.device.type == "cuda":  # the GPU's memory and load (lab.devices); on the CPU: none to report
            rec.update(device_figures(ctx.device))
        if self._carry:  # what the strategy switched away from accrued after its last record
            for k, v in self._carry.items():
                rec[k] = rec.get(k, 0) + v
            self._carry = {}
        last = step == cfg.steps - 1
        if ctx.rank == 0 and ((step + 1) % cfg.eval_every == 0 or last):
            t0 = time.perf_counter()
            rec.update(self.task.evaluate(self.model))
            rec["eval_s"] = time.perf_counter() - t0
        return records.check(rec)  # every key declared in lab.records (the dashboards read it)

    def _maybe_checkpoint(self, step: int) -> None:
        if self.on_checkpoint is None:
            return
        if (step + 1) % self.cfg.checkpoint_every == 0 or step == self.cfg.steps - 1:
            self.on_checkpoint(self.checkpoint(step))

    def checkpoint(self, step: int) -> dict:
        """This worker's piece after `step` (lab.checkpoints): every rank makes its own."""
        ctx = self.ctx
        return {"step": step + 1, "config": self.cfg.to_dict(), "rank": ctx.rank, "world": ctx.world,
                "model": checkpoints.to_cpu(self.model.state_dict()),
                "optimizer": checkpoints.to_cpu(self.optimizer.state_dict()),
                "strategy": {"name": self.cfg.strategy.name, "state": checkpoints.to_cpu(self.strategy.state_dict())},
                "compression": checkpoints.to_cpu(ctx.compression.state_dict()),
                "rng": checkpoints.get_rng(ctx.device)}


