"""Tensor and pipeline parallelism (chapter 09) against the unsplit model, on a real cluster."""
from lab.parallel import pipeline, tensor


def test_bubble_formula():
    assert pipeline.bubble(2, 1) == 0.5 and pipeline.bubble(4, 4) == 3 / 7


def test_tensor_parallel_mlp_equals_full_model(cluster2):
    out = cluster2.apply(tensor.engine_check)
    full = sum(p.numel() for p in tensor.mlp().parameters())
    for r in out:
        assert max(r["out"], r["grad_x"], r["grad_w1"], r["grad_w2"]) <= 1e-10, r
    # each worker holds about half the weights (the last bias is replicated)
    assert sum(r["params"] for r in out) - full == 10


def test_pipeline_gradients_equal_one_process(cluster2):
    for micro in (1, 4):
        out = cluster2.apply(pipeline.engine_run, micro)
        assert all(r["grad_diff"] <= 1e-10 for r in out), out
        assert len(out[0]["timeline"]) == 2 * micro
