"""The *simulated* network link (a knob of every run): what `lab.comm.Comm` charges each message.

It lives beside the communicator rather than in `lab.config` (which composes the strategies'
knobs and so sits above everything they import); `RunConfig.link` is this class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from . import knobs
from .knobs import knob


def tbf_burst_bytes(mbps: float) -> int:
    """The burst of the token bucket the lab shapes real links with (`lab.hosts`, the kernel's tbf):
    about 10 ms of traffic, at least 16 kB."""
    return max(16_000, int(mbps * 1e6) // 8 // 100)


@dataclass
class LinkConfig:
    """A *simulated* network link: each message is charged latency + bytes / bandwidth (slept),
    less what a token bucket lets through at once after the link rested (as a real shaped link)."""
    bandwidth_mbps: Optional[float] = knob(None, "SIMULATED link bandwidth, megabits per second", range="(0, inf)",
                                           live=True, widget="log", ui=(0.1, 10_000), note="None: no simulated link")
    latency_ms: float = knob(0.0, "SIMULATED latency per message, ms", range=(0, 10_000), live=True, ui=(0, 200, 0.5))
    burst_kb: Optional[float] = knob(None, "SIMULATED token bucket: kB a rested link passes at once", range=(0, None),
                                     live=True, note="None: as the lab's real links (tbf: ~10 ms of traffic, at "
                                                     "least 16 kB); 0: every byte waits for the bandwidth")

    def validate(self):
        knobs.validate(self)

    @property
    def active(self) -> bool:
        return self.bandwidth_mbps is not None or self.latency_ms > 0

    def seconds(self, nbytes: int, messages: int = 1) -> float:
        """Simulated transfer time of `nbytes` sent as `messages` messages."""
        t = messages * self.latency_ms / 1000.0
        if self.bandwidth_mbps is not None:
            t += nbytes * 8 / (self.bandwidth_mbps * 1e6)
        return t

    def burst_bytes(self) -> int:
        """The token bucket's size in bytes (0 without a bandwidth or with `burst_kb=0`)."""
        if self.bandwidth_mbps is None:
            return 0
        return tbf_burst_bytes(self.bandwidth_mbps) if self.burst_kb is None else int(self.burst_kb * 1000)


class TokenBucket:
    """One sender's token bucket, as the kernel's tbf: tokens accrue at the link's rate while it
    rests, up to the burst; a transfer passes as many bytes at once as there are tokens, the rest at
    the rate, after whatever the link still had to send."""

    def __init__(self):
        self.tokens: Optional[float] = None   # a new link has rested: a full bucket
        self.free_at = 0.0                    # when the link has sent all it was given

    def seconds(self, nbytes: float, now: float, rate: float, burst: float) -> float:
        """How long a transfer of `nbytes` given to the link at `now` takes (rate in bytes/s)."""
        if self.tokens is None:
            self.tokens = burst
        self.tokens = min(burst, self.tokens + max(0.0, now - self.free_at) * rate)
        passed = min(self.tokens, nbytes)
        self.tokens -= passed
        start = max(now, self.free_at)
        self.free_at = start + (nbytes - passed) / rate
        return self.free_at - now
