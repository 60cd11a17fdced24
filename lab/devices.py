"""Where a worker computes: its device's figures, the data plane it talks on, and device checks.

A worker's *data plane* carries gradients, parameters and payloads on the worker's device: NCCL
when each worker owns a GPU; gloo when workers share one (gloo moves CUDA tensors itself only in
all-reduce and broadcast, so `lab.comm.Comm` stages the other collectives through host memory),
gloo on the CPU. Its *control plane* is always a gloo group on the CPU (clocks, health checks,
barriers, small messages), made beside it by `lab.worker.make_groups`.

The notebook side checks a device request before any engine starts (`check_request`) and, before
a run, whether the workers sharing a GPU fit in its memory (`check_fit`, `lab.fit`): one line each.
"""
from __future__ import annotations

from typing import Optional

import torch

from .errors import ConfigError, check

# gloo's CUDA support: these collectives move CUDA tensors directly; every other one is staged
GLOO_CUDA_NATIVE = ("all_reduce", "broadcast")
STAGED = ("all-gather", "gather", "scatter", "reduce-scatter", "send/recv")


def data_plane(backend: str, device) -> str:
    """The data plane in words, e.g. "nccl", "gloo, host-staged all-gather, ..." or "gloo (cpu)"."""
    d = torch.device(device)
    if d.type != "cuda":
        return f"{backend} ({d.type})"
    if backend == "gloo":
        return "gloo, host-staged " + ", ".join(STAGED)
    return str(backend)


def figures(device) -> dict:
    """This worker's device: name, memory allocated and peak (MB) and utilisation (%).

    On the CPU the name is "cpu" and the rest None (shown as n/a): nothing is invented. On CUDA
    the utilisation is None where the driver does not report it (torch asks pynvml for it).
    """
    d = torch.device(device)
    out = {"device": str(d), "device_name": "cpu", "mem_mb": None, "mem_peak_mb": None, "util_pct": None}
    if d.type != "cuda" or not torch.cuda.is_available():
        return out
    out["device_name"] = torch.cuda.get_device_name(d)
    out["mem_mb"] = torch.cuda.memory_allocated(d) / 2**20
    out["mem_peak_mb"] = torch.cuda.max_memory_allocated(d) / 2**20
    try:
        out["util_pct"] = float(torch.cuda.utilization(d))
    except Exception:  # no pynvml, or a driver that does not say: unknown, not zero
        out["util_pct"] = None
    return out


def na(x, fmt: str = "{:.0f}") -> str:
    """A figure for display: formatted, or "n/a" when the device does not report it."""
    return "n/a" if x is None else fmt.format(x)


# -- checks before anything starts (notebook side) -----------------------------------------------
def check_request(device: str, gpus: Optional[int] = None) -> None:
    """One line for a device this machine cannot give: "cuda" without CUDA, a GPU index out of range.

    `device` is "auto", "cpu", "cuda" or "cuda:N" (every worker on GPU N); `gpus` is the number
    of GPUs (default: what torch sees here).
    """
    ok = device in ("auto", "cpu", "cuda") or (isinstance(device, str) and device.startswith("cuda:")
                                                and device[5:].isdigit())
    check(ok, "device", "one of auto, cpu, cuda, cuda:N", device)
    if not device.startswith("cuda"):
        return
    gpus = torch.cuda.device_count() if gpus is None else gpus
    if gpus == 0:
        why = "torch was built without CUDA" if not torch.backends.cuda.is_built() else "no GPU is visible"
        raise ConfigError("device", f"auto or cpu on this machine ({why})", device)
    if ":" in device:
        check(int(device[5:]) < gpus, "device", f"cuda or cuda:N with N in [0, {gpus - 1}] ({gpus} GPUs here)",
              device)


def placement(device: str, workers: int, gpus: int):
    """(devices by rank, data backend): a GPU per worker (`rank mod gpus`) or all on `cuda:N`."""
    use_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
    if not use_gpu:
        return ["cpu"] * workers, "gloo"
    if ":" in device:
        return [device] * workers, ("nccl" if workers == 1 else "gloo")
    devices = [f"cuda:{r % gpus}" for r in range(workers)]
    return devices, ("nccl" if workers <= gpus else "gloo")


OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "adam": 2}   # buffers per parameter


def estimate_bytes(params: int, itemsize: int, optimizer: str, batch: int, sample_bytes: int = 0,
                   activations_per_sample: int = 0) -> int:
    """A worker's device memory, roughly: weights, gradients, optimizer state, two flat buckets,
    the batch and its activations, plus CUDA's context (~300 MB). An estimate to refuse the
    hopeless, not a promise."""
    per_param = 2 + OPTIMIZER_STATES.get(optimizer, 2) + 2   # weights, grads, state, buckets
    return int(params * itemsize * per_param + batch * (sample_bytes + activations_per_sample * itemsize)
               + 300 * 2**20)


def check_fit(sharing: int, need_bytes: int, free_bytes: int, device: str) -> None:
    """One line when `sharing` workers of `need_bytes` each do not fit in a GPU's `free_bytes`."""
    fit = max(0, free_bytes // max(1, need_bytes))
    check(sharing <= fit, "workers", f"at most {fit} per GPU for this model and batch on {device} "
          f"(~{need_bytes / 2**20:.0f} MB each, {free_bytes / 2**20:.0f} MB free)", f"{sharing} on {device}")


# -- per-step figures in the records (GPU workers only) -------------------------------------------
def _declare():
    from . import records
    records.declare("mem_mb", "MB", None, "GPU memory allocated by this worker at the end of the step",
                    label="GPU memory")
    records.declare("mem_peak_mb", "MB", "lower", "peak GPU memory allocated by this worker so far",
                    label="GPU memory peak")
    records.declare("util_pct", "%", None, "GPU utilisation the driver reports (None where it does not)",
                    label="GPU utilisation")


_declare()


def step_figures(device) -> dict:
    """The per-step record's device figures: memory, peak and utilisation (CUDA workers only)."""
    f = figures(device)
    return {k: f[k] for k in ("mem_mb", "mem_peak_mb", "util_pct")}


# -- in the run's meta and summary (notebook side) ------------------------------------------------
def run_devices(infos) -> dict:
    """What a run's meta.json keeps about where it ran: each rank's device and its name, the data plane."""
    if not infos:
        return {}
    devs = [{"rank": i, "device": d.get("device") or "cpu", "device_name": d.get("device_name") or "cpu"}
            for i, d in enumerate(infos)]
    planes = sorted({d.get("data_plane") or data_plane(d.get("backend") or "gloo", d.get("device") or "cpu")
                     for d in infos})
    return {"devices": devs, "data_plane": "; ".join(planes)}


def device_summary(meta: dict, rank: int, rows) -> dict:
    """A worker's device figures for the run summary: from its records on a GPU, "cpu" and None on the CPU."""
    devs = {d["rank"]: d for d in meta.get("devices") or ()}
    d = devs.get(rank, {})
    peaks = [r["mem_peak_mb"] for r in rows if r.get("mem_peak_mb") is not None]
    mems = [r["mem_mb"] for r in rows if r.get("mem_mb") is not None]
    utils = [r["util_pct"] for r in rows if r.get("util_pct") is not None]
    return {"device": d.get("device", "cpu"), "device_name": d.get("device_name", "cpu"),
            "mem_mb": mems[-1] if mems else None, "mem_peak_mb": max(peaks) if peaks else None,
            "util_pct": sum(utils) / len(utils) if utils else None}


# -- device-check mode on a CPU machine ---------------------------------------------------------
SCOPED = ("attach", "step", "detach", "load_state_dict")


def elsewhere(strategy, optimizer=None):
    """Device-check mode on a CPU worker: tensors a strategy makes *without saying where* land on
    "meta", a device that is neither the CPU nor the worker's, as they would land on the CPU
    beside a GPU worker. Handed to a collective, such a tensor fails `Comm`'s device check here,
    on a CPU machine, exactly where NCCL would refuse it on a GPU one (e.g. a clock made by
    `torch.tensor([time.time()])` all-reduced on the data plane). Tensors made with an explicit
    device, or `*_like` another tensor, are unaffected. The optimizer's own step runs outside it
    (torch's optimizers make their step counters without a device, on purpose).

    Returns `strategy` itself, its attach, step, detach and load_state_dict run under it.
    """
    for name in SCOPED:
        setattr(strategy, name, _scoped(getattr(strategy, name)))
    if optimizer is not None and not getattr(optimizer.step, "_lab_outside", False):
        optimizer.step = outside(optimizer.step)
    return strategy


def _scoped(fn):
    def run(*a, **kw):
        with torch.device("meta"):
            return fn(*a, **kw)
    return run


def outside(fn):
    """`fn` run with tensors made without a device on the CPU again (inside an `elsewhere` scope)."""
    def run(*a, **kw):
        with torch.device("cpu"):
            return fn(*a, **kw)
    run._lab_outside = True
    return run


def checked(strategy, ctx, optimizer=None):
    """The strategy as the trainer should drive it: under `elsewhere` in device-check mode on a CPU worker."""
    comm = getattr(ctx, "comm", None)
    if comm is None or not getattr(comm, "check", False) or ctx.device.type != "cpu":
        return strategy
    return elsewhere(strategy, optimizer)
