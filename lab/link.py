"""The *simulated* network link (a knob of every run): what `lab.comm.Comm` charges each message.

It lives beside the communicator rather than in `lab.config` (which composes the strategies'
knobs and so sits above everything they import); `RunConfig.link` is this class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from . import knobs
from .knobs import knob


@dataclass
class LinkConfig:
    """A *simulated* network link: each message is charged latency + bytes / bandwidth (slept)."""
    bandwidth_mbps: Optional[float] = knob(None, "SIMULATED link bandwidth, megabits per second", range="(0, inf)",
                                           live=True, widget="log", ui=(0.1, 10_000), note="None: no simulated link")
    latency_ms: float = knob(0.0, "SIMULATED latency per message, ms", range=(0, 10_000), live=True, ui=(0, 200, 0.5))

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
