"""The hand-written ring all-reduce (chapter 04) against sum and against torch.distributed."""
import pytest
import torch

from lab import ring


@pytest.mark.parametrize("n,size", [(2, 10), (3, 7), (4, 1000), (5, 3)])
def test_simulated_ring_equals_sum_and_sends_2_n_minus_1_over_n(n, size):
    xs = [torch.randn(size, dtype=torch.float64) for _ in range(n)]
    outs, log = ring.simulate(xs)
    total = sum(xs)
    assert all(torch.allclose(o, total, atol=1e-12) for o in outs)
    for r in range(n):
        sent = sum(nb for (_, _, src, _, _, nb) in log if src == r)
        msgs = sum(1 for m in log if m[2] == r)
        assert msgs == 2 * (n - 1)
        if size % n == 0:  # equal chunks: exactly the ring formula the ledger charges
            assert sent == 2 * (n - 1) / n * size * 8


def test_ring_on_the_cluster_equals_dist_all_reduce(cluster2):
    diffs = cluster2.apply(ring.engine_check, 1003)
    assert max(diffs) <= 1e-12, diffs
