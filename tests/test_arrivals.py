"""`lab.strategies.arrivals`: waiting split from communication by arrival stamps, by hand."""
import time
from types import SimpleNamespace

import pytest
import torch

from lab.comm import Ledger
from lab.strategies.arrivals import Arrivals


class _Clock:
    def __init__(self):
        self.reads = 0

    def now(self):   # (a CUDA worker's clock synchronises the device here)
        self.reads += 1
        return time.perf_counter()


def _arrivals(rank=1):
    comm = SimpleNamespace(control=SimpleNamespace(all_reduce=lambda t, op=None: t), ledger=Ledger(),
                           clock=_Clock())
    return Arrivals(SimpleNamespace(rank=rank, comm=comm))


def test_the_wait_for_the_last_arrival_moves_from_comm_to_wait_and_the_origin_follows_it():
    a = _arrivals(rank=1)
    a.ctx.comm.ledger.comm_s = 1.0
    origin = a.origin
    assert a.settle(torch.tensor([0.5, 0.2, 0.3], dtype=torch.float64), collective_s=1.0) == pytest.approx(0.3)
    assert a.ctx.comm.ledger.comm_s == pytest.approx(0.7) and a.ctx.comm.ledger.wait_s == pytest.approx(0.3)
    assert a.origin == pytest.approx(origin + 0.5)   # the next stamps count from the last arrival
    # never more than the collective took (a clock step between workers is not waiting)
    assert a.settle(torch.tensor([9.0, 0.0, 0.0], dtype=torch.float64), collective_s=0.01) == pytest.approx(0.01)


def test_stamps_read_the_device_clock_and_keep_microseconds_in_float32_however_long_the_run():
    a = _arrivals(rank=0)
    slots = torch.zeros(2, dtype=torch.float32)
    a.origin = time.time() - 7200.0                  # two hours of steps since the origin was agreed
    reads = a.ctx.comm.clock.reads
    a.stamp(slots)
    assert a.ctx.comm.clock.reads == reads + 1        # after the device's queued work, as comm_s is timed
    a.split(slots, collective_s=0.0)                  # the collective's last arrival is this one
    a.stamp(slots)
    assert 0 <= slots[0].item() < 1.0 and slots[1].item() == 0.0   # small: float32 holds it to < 0.1 us
