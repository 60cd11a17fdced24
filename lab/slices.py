"""A short scheduler slice for every thread of an engine, so that a message's wake-up preempts compute.

Linux's fair scheduler (EEVDF, 6.6+) lets a woken thread run at once only if its deadline comes
before the running thread's; otherwise it waits until the running thread's slice has ended (1.4 ms
by default on 2 cores), which the scheduler notices at a timer tick (every 4 ms at HZ=250). A collective is a chain of such wake-ups (in gloo three
threads per worker take part: the caller, the work thread and the socket loop), so with more
threads than cores, or one woken just after a step's compute, each link of the chain can wait a
tick. Since Linux 6.12 a thread may ask for a shorter slice (`sched_setattr`'s `sched_runtime`
for SCHED_OTHER, 0.1 to 100 ms, no privilege needed): its deadline comes sooner, so its wake-up
preempts. The lab asks for `SLICE_US` on every thread of an engine once its process groups exist
(`lab.worker.setup`); threads started later inherit it from the thread that starts them. A
thread that computes without being woken still runs until the tick, so compute is not cut into
shorter pieces. Older kernels and other systems ignore or refuse the request: nothing changes there.

Side by side, `scripts/host-probe.py --slice-us 0` (the kernel's default) against the lab's.
"""
from __future__ import annotations

import ctypes
import os
import platform
from typing import Iterable, Optional

SLICE_US = 100.0   # the shortest slice Linux grants
# sched_setattr / sched_getattr syscall numbers (glibc exposes no wrapper)
SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275)}


class _Attr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("policy", ctypes.c_uint32), ("flags", ctypes.c_uint64),
                ("nice", ctypes.c_int32), ("priority", ctypes.c_uint32), ("runtime", ctypes.c_uint64),
                ("deadline", ctypes.c_uint64), ("period", ctypes.c_uint64),
                ("util_min", ctypes.c_uint32), ("util_max", ctypes.c_uint32)]


def _calls():
    nums = SYSCALLS.get(platform.machine()) if os.name == "posix" and os.path.isdir("/proc/self/task") else None
    return (ctypes.CDLL(None, use_errno=True), nums) if nums else (None, None)


def threads(pid: Optional[int] = None) -> list:
    """The thread ids of process `pid` (this one by default)."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid or 'self'}/task")]
    except OSError:
        return []


def get_slice_us(tid: int) -> Optional[float]:
    """The slice thread `tid` runs with, in us (the kernel's default unless it asked for one); None
    where unknown or not under the normal policy."""
    libc, nums = _calls()
    if libc is None:
        return None
    attr = _Attr()
    if libc.syscall(nums[1], int(tid), ctypes.byref(attr), ctypes.sizeof(_Attr), 0) != 0:
        return None
    return attr.runtime / 1000.0 if attr.policy == 0 else None


def set_slice(us: float = SLICE_US, tids: Optional[Iterable[int]] = None) -> int:
    """Ask for a slice of `us` microseconds (0: the kernel's default) for threads `tids` (all of
    this process's by default) that run under the normal policy, keeping each one's nice value.
    Returns how many took it (0 where the system has no such request)."""
    from .errors import check
    check(us == 0 or 100 <= us <= 100_000, "slice_us", "0 (the default) or 100 to 100000 microseconds", us)
    libc, nums = _calls()
    if libc is None:
        return 0
    done = 0
    for tid in (threads() if tids is None else tids):
        if get_slice_us(tid) is None:   # gone, or a real-time / idle policy: leave it alone
            continue
        try:
            nice = os.getpriority(os.PRIO_PROCESS, tid)
        except OSError:
            continue
        attr = _Attr(size=ctypes.sizeof(_Attr), policy=0, nice=nice, runtime=int(us * 1000))
        if libc.syscall(nums[0], int(tid), ctypes.byref(attr), 0) == 0:
            done += 1
    return done
