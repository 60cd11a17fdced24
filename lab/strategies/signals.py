"""Signalling through the cluster's key/value store, never hanging (used by `async` and `ssp`).

Workers announce messages and clocks as keys in the store; whoever waits for a key waits in
short slices and, between them, asks the worker context whether the run was aborted (the notebook
aborts every worker when one dies), so no thread waits forever on a worker that is gone.
"""
from __future__ import annotations

import datetime
import threading
from typing import Optional

from ..errors import WorkerError

POLL_S = 0.25  # how long one store wait lasts before looking for an abort (or, elastic, a new generation)


def store_client(ctx, role: str):
    """A private connection to the cluster's store for one thread (`role`), made once per run.

    A TCPStore connection serialises its calls, so a thread blocked in `wait` would stall every
    other thread sharing it: each thread gets its own (kept in `ctx.cache`).
    """
    import torch.distributed as dist
    store = ctx.store
    key = ("store", store.host, store.port, role)
    if key not in ctx.cache:
        ctx.cache[key] = dist.TCPStore(store.host, store.port, is_master=False,
                                       timeout=datetime.timedelta(seconds=30), wait_for_workers=False)
    return ctx.cache[key]


def namespace(ctx, name: str) -> str:
    """A fresh key prefix for one attach of strategy `name` (the same on every worker: they attach
    strategies in the same order), so keys of an earlier attach never answer a later one."""
    n = ctx.cache["attaches"] = ctx.cache.get("attaches", 0) + 1
    gen = ctx.cache.get("generation", 0)   # an elastic run's members re-form (lab.elastic): counts restart
    return f"lab/{ctx.run_id}/{name}/{gen}.{n}"


def wait_keys(store, keys, ctx, stop: Optional[threading.Event] = None) -> bool:
    """Wait until every key exists; False if `stop` was set. Raises WorkerError on abort; a worker's
    own wait (no `stop`) in an elastic run gives way when the workers changed (`ctx.interrupt`)."""
    timeout = datetime.timedelta(seconds=POLL_S)
    while True:
        try:
            store.wait(keys, timeout)
            return True
        except RuntimeError as e:  # DistStoreError on timeout; anything else is a broken store
            if "timeout" not in str(e).lower():
                raise WorkerError(f"worker {ctx.rank}: the cluster's store failed ({e})") from None
        why = ctx.aborted()
        if why:
            raise WorkerError(why)
        if stop is not None and stop.is_set():
            return False
        if stop is None and ctx.interrupt is not None:
            ctx.interrupt()


def join(thread: threading.Thread, ctx, stop: threading.Event) -> None:
    """Wait for `thread` to end; on abort set `stop` (so it gives up too) and raise WorkerError."""
    while thread.is_alive():
        thread.join(POLL_S)
        why = ctx.aborted()
        if why:
            stop.set()
            raise WorkerError(why)
        if ctx.interrupt is not None:
            try:
                ctx.interrupt()
            except RuntimeError:
                stop.set()
                raise
