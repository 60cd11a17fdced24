"""What the notebook sends to an engine: `call(fn, *args)` runs `lab.worker.<fn>` there.

Both the cluster (starting, health, setup) and runs (start, fetch, live changes, abort) send
work this way, so it lives below both of them.
"""


def call(fn: str, *args):
    """Runs on an engine: call `lab.worker.<fn>`. Sent by name, so engines import their own `lab`."""
    from lab import worker
    return getattr(worker, fn)(*args)
