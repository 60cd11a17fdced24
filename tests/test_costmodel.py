"""The alpha-beta cost model (lab.costmodel) against numbers worked out by hand."""
import doctest
import math

import pytest

from lab import costmodel as cm
from lab.costmodel import AlphaBeta
from lab.errors import ConfigError

B = 291_368          # the digits CNN's fp32 parameters (72,842 x 4 bytes)
LINK = AlphaBeta(alpha_s=2e-4, beta_Bps=12.5e6)   # 0.2 ms per message, 100 Mbit/s


def test_messages_and_bytes_by_hand():
    assert cm.cost("ring", 1, B) == (0, 0, 0)                    # alone: nothing on the wire
    assert cm.cost("ring", 2, 1000) == (2, 1000, 1)              # 2(n-1) = 2, 2(n-1)/n B = B, one phase
    assert cm.cost("ring", 4, 1000) == (6, 1500, 1)              # 6 messages of B/4, 1.5 B
    assert cm.cost("ring", 8, 8000) == (14, 14000, 1)            # 14 messages, 2*7/8*8000
    assert cm.cost("ps", 4, 1000) == (8, 8000, 2)                # dedicated server: 4 in, then 4 out
    assert cm.cost("ps", 4, 1000, clients=3) == (6, 6000, 2)     # the lab's ps: server is worker 0
    assert cm.cost("allgather", 4, 100) == (3, 300, 1)           # (n-1) messages, (n-1) b
    assert cm.cost("allgather", 4, 100, calls=8) == (24, 300, 1) # layer by layer: 8 all-gathers
    assert cm.cost("local", 4, 1000, period=8) == (6 / 8, 1500 / 8, 1 / 8)


def test_seconds_by_hand():
    # ring, 4 workers, 1 MB at 100 Mbit/s and 0.2 ms: 6 * 0.2 ms + 1.5e6 B / 12.5e6 B/s = 0.0012 + 0.12
    assert LINK.predict("ring", 4, 1_000_000) == pytest.approx(0.1212)
    # the lab's ps at 8 workers: 14 messages, 14 B = 4,079,152 bytes -> 0.0028 + 0.32633216
    assert LINK.predict("ps", 8, B, clients=7) == pytest.approx(0.0028 + 14 * B / 12.5e6)
    # top-k 1% payload (values + int32 indices, 8 bytes per kept entry) all-gathered over 8 workers
    b = 729 * 8
    assert LINK.predict("allgather", 8, b) == pytest.approx(7 * 2e-4 + 7 * b / 12.5e6)
    # the ring's bytes level off at 2B: 8 workers cost under 2x what 2 workers cost on bandwidth
    bw = AlphaBeta(0.0, 12.5e6)
    assert bw.predict("ring", 8, B) / bw.predict("ring", 2, B) == pytest.approx(1.75)
    # the server's grow with n: 7 clients against 1
    assert bw.predict("ps", 8, B, clients=7) / bw.predict("ps", 2, B, clients=1) == pytest.approx(7.0)


def test_a_token_bucket_burst_by_hand():
    shaped = AlphaBeta(0.0, 12.5e6, burst_B=100_000)
    # ring, 2 workers: one phase of B bytes; a rested link passes 100 kB at once
    assert shaped.predict("ring", 2, B) == pytest.approx((B - 100_000) / 12.5e6)
    # after only 4 ms of quiet the bucket holds 4e-3 * 12.5e6 = 50 kB
    assert shaped.predict("ring", 2, B, idle_s=0.004) == pytest.approx((B - 50_000) / 12.5e6)
    # ps, 3 clients: two phases of 3B, each 100 kB cheaper
    assert shaped.predict("ps", 4, B, clients=3) == pytest.approx(2 * (3 * B - 100_000) / 12.5e6)
    # ps with no rest between steps: step after step each way still rests while the other is busy
    # (3B takes far longer than the 8 ms a 100 kB bucket needs to refill): both burst
    assert shaped.predict("ps", 4, B, clients=3, idle_s=0) == pytest.approx(2 * (3 * B - 100_000) / 12.5e6)
    # ... unless the other way is too short to refill it: 1 client, 120 kB each way, no rest: way in
    # d1 = (120k - d2 beta) / beta and way out the same with d1, so together they pay 120 kB's time
    assert shaped.predict("ps", 2, 120_000, clients=1, idle_s=0) == pytest.approx(120_000 / 12.5e6)
    # ... and 2 ms of quiet a step refill 25 kB more for each way: d1 + d2 = (240k - 2 x 25k - (d1 + d2)
    # beta) / beta, so they pay 95 kB's time
    assert shaped.predict("ps", 2, 120_000, clients=1, idle_s=0.002) == pytest.approx(95_000 / 12.5e6)
    # local, period 8: one averaging of B every 8 steps, the burst once per averaging
    assert shaped.predict("local", 2, B, period=8) == pytest.approx((B - 100_000) / 12.5e6 / 8)
    # ... and its link rests 8 steps' worth of quiet: 1 ms a step refills 8 x 12.5 kB = 100 kB
    assert shaped.predict("local", 2, B, period=8, idle_s=0.001) == pytest.approx((B - 100_000) / 12.5e6 / 8)
    # a payload smaller than the burst costs only its latency
    assert AlphaBeta(1e-4, 12.5e6, 100_000).predict("allgather", 2, 5_000) == pytest.approx(1e-4)


def test_fit_recovers_the_constants_from_one_measurement():
    small = (2, 4, LINK.seconds(2, 4))
    large = (2, B, LINK.seconds(2, B))
    fit = AlphaBeta.fit(small, large)
    assert fit.alpha_s == pytest.approx(2e-4, rel=1e-4) and fit.beta_Bps == pytest.approx(12.5e6, rel=1e-4)
    # noise making alpha negative: clamped to 0, beta from the large transfer
    fit = AlphaBeta.fit((2, 4, 1e-9), (2, 1_000_000, 0.08))
    assert fit.alpha_s == 0 and fit.beta_Bps == pytest.approx(12.5e6)
    assert AlphaBeta.from_link(100).beta_Bps == 12.5e6
    # the same large transfer after a pause: 8 ms sooner on 12.5 MB/s = a 100 kB burst
    fit = AlphaBeta.fit(small, large, rested=(2, B, large[2] - 0.008))
    assert fit.burst_B == pytest.approx(100_000, rel=1e-3) and "burst = 100 kB" in str(fit)
    assert "100.0 Mbit/s" in str(AlphaBeta.from_link(100))


def test_bad_input_is_one_line():
    for call, knob in [(lambda: cm.cost("ring", 0, 10), "workers"), (lambda: cm.cost("ring", 2, -1), "nbytes"),
                       (lambda: AlphaBeta.fit((1, 10, 1.0), (1, 5, 2.0)), "fit")]:
        with pytest.raises(ConfigError) as e:
            call()
        assert str(e.value).startswith(knob) and "\n" not in str(e.value)
    with pytest.raises(ConfigError):
        cm.cost("gossip-by-carrier-pigeon", 2, 10)


def test_error_and_doctests():
    assert cm.error(1.1, 1.0) == pytest.approx(0.1) and math.isnan(cm.error(1.0, 0.0))
    assert doctest.testmod(cm).failed == 0


def test_the_async_star_overlaps_pushes_and_replies():
    # one client: nothing overlaps, the synchronous star's 2 B; more: c payloads plus its own reply
    assert cm.cost("ps-async", 2, 1000, clients=1) == cm.cost("ps", 2, 1000, clients=1)
    assert cm.cost("ps-async", 4, 1000, clients=3) == (6, 4000, 2)
    assert cm.cost("ps", 4, 1000, clients=3).bytes == 6000
    assert cm.STRATEGY_ALGORITHM["async"](None, 8) == ("ps-async", {"clients": 7})
