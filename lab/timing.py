"""Honest clocks: on a GPU, host time measures kernel *launches* unless the device is synchronised.

CUDA runs kernels asynchronously: `loss.backward()` returns once the kernels are queued, so a
host clock read right after it charges the backward pass to whatever waits next (usually the
first collective, which then looks slow). `Clock.now()` first waits for the device to finish
what was queued (`torch.cuda.synchronize`) and then reads `time.perf_counter`, so time read at
the boundaries of compute, compression, communication and waiting belongs to the right phase.
On the CPU every operation is already finished when it returns: `now()` is `perf_counter`.

Used by `lab.comm.Comm` (each collective and each wait) and `lab.train.Trainer` (compute).
A synchronisation costs a few microseconds and removes overlap between phases, which is what
makes the breakdown true; overlapped communication is reported as its own figure.

Example:
    >>> clock = clock_for("cpu")
    >>> t0 = clock.now(); ...; seconds = clock.now() - t0
"""
from __future__ import annotations

import time

import torch


class Clock:
    """`now()`: seconds from `time.perf_counter`, read after the device finished its queued work.

    Args:
        device: the device whose work is timed; a CUDA device is synchronised at every reading.
    """

    def __init__(self, device="cpu"):
        self.device = torch.device(device)
        self.syncs = self.device.type == "cuda"   # selection: only CUDA queues work asynchronously

    @property
    def kind(self) -> str:
        """What `now()` does, in words (for summaries)."""
        return f"perf_counter after torch.cuda.synchronize({self.device})" if self.syncs else "perf_counter"

    def synchronize(self) -> None:
        """Wait for the device's queued work (a CPU-GPU sync point on CUDA; nothing on the CPU)."""
        if self.syncs:
            torch.cuda.synchronize(self.device)

    def now(self) -> float:
        self.synchronize()
        return time.perf_counter()


_CPU = Clock("cpu")


def clock_for(device) -> Clock:
    """The clock for `device` (a torch.device or a string such as "cpu", "cuda:0")."""
    d = torch.device(device)
    return _CPU if d.type != "cuda" else Clock(d)
