"""Compressed gradients through the parameter servers (`ps`, `async`): packed bytes, decoded by the server."""
import pytest
import torch

from lab.compression import COMPRESSORS
from lab.compression.memory import Residual
from lab.compression.wire import WireCodec
from lab.config import CompressionConfig, RunConfig
from lab.errors import ConfigError

N_PARAMS = 72_842


@pytest.mark.parametrize("name", [n for n in COMPRESSORS.names() if n != "randomk"])
def test_codec_round_trip_equals_decompress_of_compress(name):
    cc = CompressionConfig(name=name, ratio=0.05, scope="global" if name == "powersgd" else "layer")
    like = torch.zeros(1000)
    enc = WireCodec(COMPRESSORS.build(name, cc), Residual(), like, "ps")
    dec = WireCodec(COMPRESSORS.build(name, cc), Residual(), like, "ps")  # the server's own instance
    g = torch.randn(1000)
    torch.manual_seed(1)  # stochastic compressors (qsgd, terngrad) draw the same numbers twice
    buf = enc.encode(g.clone())
    assert buf.dtype == torch.uint8 and buf.numel() == enc.nbytes
    ref_c = COMPRESSORS.build(name, cc)
    torch.manual_seed(1)
    payload, ctx = ref_c.compress(g.clone(), "flat")
    assert torch.allclose(dec.decode(buf), ref_c.decompress(payload, ctx), atol=1e-6)


def test_randomk_cannot_go_to_a_server():
    with pytest.raises(ConfigError, match="^compressor must be one of .* with strategy async"):
        RunConfig().replace(strategy="async", compressor="randomk").validate()
    RunConfig().replace(strategy="sync", compressor="randomk").validate()


def test_powersgd_to_a_server_must_fold_the_flat_gradient():
    """Per layer, the one flat vector a server receives is a 1-column matrix: it would travel uncompressed."""
    with pytest.raises(ConfigError, match='^strategy.compression.scope must be "global" for powersgd with strategy async'):
        RunConfig().replace(strategy="async", compressor="powersgd").validate()
    RunConfig().replace(strategy="async", compressor="powersgd", **{"strategy.compression.scope": "global"}).validate()
    RunConfig().replace(strategy="sync", compressor="powersgd").validate()


@pytest.mark.parametrize("strategy", ["ps", "async"])
def test_topk_through_a_server_sends_topk_bytes_and_learns(cluster2, runs_dir, strategy):
    cfg = RunConfig(steps=200, runs_dir=runs_dir).replace(  # momentum SGD: topk + EF lags with Adam
        strategy=strategy, compressor="topk", ratio=0.01, error_feedback=True, optimizer="momentum", lr=0.05)
    run = cluster2.train(cfg).wait(timeout=300)
    k = int(0.01 * N_PARAMS)
    worker1 = [r for r in run.records if r["rank"] == 1]
    assert {r["payload_bytes"] for r in worker1} == {k * 8}  # values + int32 indices
    assert all(r["bytes_sent"] <= k * 8 + 64 for r in worker1)  # and that is what goes to the server
    # it learns (chance is 0.1); async + top-k converges more slowly: stale *and* sparse updates
    assert run.summary()["test_acc"] >= (0.8 if strategy == "ps" else 0.5), run.summary()
