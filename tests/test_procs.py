"""lab.procs: a gloo group of local processes that answers, fails loudly, and never leaves one behind."""
import time

import pytest
import torch
import torch.distributed as dist

from lab.procs import Group, GroupError


def rank_sum(rank, world):
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    return rank, world, t.item(), torch.get_num_threads()


def fail_on_one(rank, world):
    if rank == 1:
        raise ValueError("boom on rank 1")
    dist.barrier()  # rank 0 would wait here for ever: the group must end it
    return rank


def sleep_long(rank, world):
    time.sleep(60)


def test_group_runs_jobs_fails_loudly_and_cleans_up():
    with Group(2, timeout=120) as g:
        assert g.run(rank_sum) == [(0, 2, 3.0, 1), (1, 2, 3.0, 1)]
        procs = list(g.procs)
        with pytest.raises(GroupError, match="boom on rank 1"):
            g.run(fail_on_one)
        assert not any(p.is_alive() for p in procs)  # the blocked rank 0 was ended too
        assert g.run(rank_sum)[0][2] == 3.0           # and the next job gets a fresh group
        procs = list(g.procs)
        t0 = time.monotonic()
        with pytest.raises(GroupError, match="timeout"):
            g.run(sleep_long, timeout=2)
        assert time.monotonic() - t0 < 20
        assert not any(p.is_alive() for p in procs)
