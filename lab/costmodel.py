"""The alpha-beta (latency-bandwidth) cost model of communication (chapter 13, `bench scaling`).

A message of m bytes costs alpha + m / beta seconds: alpha the per-message latency, beta the link's
bandwidth in bytes/s. An algorithm is then just how many messages and how many bytes cross the
busiest link one after another in one step, for n workers and a payload of B bytes:

    ring all-reduce (sync)        2 (n-1) messages    2 (n-1)/n * B bytes       (per worker, each way)
    parameter server (star)       2 c messages        2 c * B bytes             (the server's link: c
                                  gradients in, then c parameter copies out; c = n for a dedicated
                                  server, n-1 when the server is worker 0 as in the lab's `ps`)
    asynchronous server           2 c messages        (c + 1) * B bytes         (pushes and replies of
                                  different clients overlap on the full-duplex link: `async`)
    all-gather (compressed, b)    (n-1) messages      (n-1) * b bytes           (per worker, each way)
    local SGD (period H)          a ring all-reduce of the parameters every H steps: ring / H

Links are full duplex (each direction its own beta), so what a worker sends and what it receives
at the same time cost once. `AlphaBeta.fit` takes the constants from one measurement (the time of
two transfers of different sizes on the same link); `predict` gives seconds per step for an
algorithm by name.

A link shaped by a token bucket (`tc tbf`, `lab.hosts`) lets `burst_B` bytes through at once after
it idled long enough to refill (burst_B / beta seconds): each phase of a step (the ring: one; the
server: in, then out) saves up to that many bytes' time, as much as the idle time before it
refilled (step after step, the server's way out rests while its way in is busy, and its way in
while its way out is). `fit` measures it too when given the large transfer again after a pause.

    >>> ab = AlphaBeta(alpha_s=1e-4, beta_Bps=12.5e6)        # 0.1 ms, 100 Mbit/s
    >>> round(ab.predict("ring", n=4, nbytes=1_000_000), 4)    # 6 * 1e-4 + 1.5e6 / 12.5e6
    0.1206
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Dict, NamedTuple, Optional, Tuple

from .errors import check
from .registry import Registry

ALGORITHMS = Registry("algorithm")   # name -> f(n, nbytes, **kw) -> Cost on the busiest link per step


class Cost(NamedTuple):
    """What one step puts on the busiest link, one way: messages, bytes, and in how many phases
    (bursts of traffic with the link idle before each; a fraction when it talks every few steps)."""
    messages: float
    bytes: float
    phases: float = 1.0


@ALGORITHMS.register("ring")
def ring(n: int, nbytes: float) -> Cost:
    """Ring all-reduce: 2 (n-1) messages of B/n, 2 (n-1)/n * B bytes per worker each way."""
    return Cost(2 * (n - 1), 2 * (n - 1) / n * nbytes)


@ALGORITHMS.register("ps")
def parameter_server(n: int, nbytes: float, clients: int = None) -> Cost:
    """Star: the server's link takes `clients` gradients in, then sends `clients` copies out
    (one after the other: the server needs every gradient before it can answer): two phases."""
    c = n if clients is None else clients
    return Cost(2 * c, 2 * c * nbytes, 2)


@ALGORITHMS.register("ps-async")
def async_server(n: int, nbytes: float, clients: int = None) -> Cost:
    """Asynchronous star: nobody waits for a round, so one client's push comes in while the reply to
    the one before goes out (a full-duplex link); a client's exchange waits its turn behind the
    others': per exchange the busiest direction carries `clients` payloads, plus one (its own reply
    follows its push). With one client that is the synchronous star's 2 B."""
    c = n if clients is None else clients
    return Cost(2 * c, (c + 1) * nbytes, 2)


@ALGORITHMS.register("allgather")
def all_gather(n: int, nbytes: float, calls: int = 1) -> Cost:
    """All-gather of compressed payloads of b bytes in all: (n-1) messages per call (one call per
    bucket: a bucket's layers, each compressed on its own, travel together), (n-1) * b bytes each way."""
    return Cost((n - 1) * calls, (n - 1) * nbytes)


@ALGORITHMS.register("local")
def local_sgd(n: int, nbytes: float, period: int = 8) -> Cost:
    """A ring all-reduce of the parameters every `period` steps, spread over those steps."""
    m, b, _ = ring(n, nbytes)
    return Cost(m / period, b / period, 1 / period)


def cost(algorithm: str, n: int, nbytes: float, **kw) -> Cost:
    """Messages, bytes and phases on the busiest link per step; nothing for a single worker."""
    check(isinstance(n, int) and n >= 1, "workers", "an integer >= 1", n)
    check(nbytes >= 0, "nbytes", "a number >= 0", nbytes)
    if n == 1:
        return Cost(0.0, 0.0, 0.0)
    return ALGORITHMS.get(algorithm)(n, nbytes, **kw)


SWEEPS = 8   # of the phases' steady state (`AlphaBeta.seconds`)


@dataclass(frozen=True)
class AlphaBeta:
    """Fitted link constants: alpha_s seconds per message, beta_Bps bytes per second, and burst_B
    bytes a shaped link passes at once after idling (its token bucket; 0 for a plain link)."""
    alpha_s: float
    beta_Bps: float
    burst_B: float = 0.0

    def seconds(self, messages: float, nbytes: float, phases: float = 1.0, idle_s: float = math.inf) -> float:
        """alpha * messages + bytes / beta, less the burst each phase gets after `idle_s` of quiet."""
        if phases <= 0 or self.burst_B <= 0:
            return self.alpha_s * messages + nbytes / self.beta_Bps
        k = max(1, round(phases))             # whole phases; a fraction: one phase every 1/phases steps
        # a phase every 1/phases steps (local SGD) rests through the steps between
        per, quiet = nbytes / phases, idle_s / min(1.0, phases)
        # step after step, each phase's way rests through the quiet time and the step's other phases
        # (the server's way in while its way out is busy, and the other way round): their durations
        # depend on each other, so sweep to the steady state (two phases settle in one sweep)
        d = [per / self.beta_Bps] * k
        for _ in range(SWEEPS if k > 1 else 1):
            for i in range(k):
                rest = quiet + sum(d) - d[i]
                d[i] = max(0.0, per - min(self.burst_B, rest * self.beta_Bps)) / self.beta_Bps
        return self.alpha_s * messages + sum(d) * phases / k

    def predict(self, algorithm: str, n: int, nbytes: float, idle_s: float = math.inf, **kw) -> float:
        """Seconds of communication per step of `algorithm` with n workers and a B-byte payload
        (`idle_s`: how long the link rests between phases, which refills a shaped link's burst)."""
        return self.seconds(*cost(algorithm, n, nbytes, **kw), idle_s=idle_s)

    @classmethod
    def fit(cls, small: Tuple[float, float, float], large: Tuple[float, float, float],
            rested: Optional[Tuple[float, float, float]] = None) -> "AlphaBeta":
        """From one measurement: two transfers (messages, bytes, seconds) of different sizes (the
        large one well past any burst), and optionally `rested`: a transfer after the link idled.

        Solves alpha * m + bytes / beta = seconds for both; alpha is clamped at 0 (a negative
        latency is measurement noise), beta then comes from the large transfer alone. The burst is
        the bytes the rested transfer did not have to wait for: (predicted - measured) * beta.

            >>> AlphaBeta.fit((2, 0, 0.0002), (2, 1_000_000, 0.0802))
            AlphaBeta(alpha_s=0.0001, beta_Bps=12500000.0, burst_B=0.0)
        """
        (m1, b1, t1), (m2, b2, t2) = small, large
        check(b2 > b1 and t2 > 0, "fit", "a small and a strictly larger transfer with a positive time",
              (small, large))
        # per-byte cost from the difference (alpha cancels when the message counts are equal)
        det = m1 * b2 - m2 * b1
        if det == 0:
            raise ValueError("the two transfers are proportional: alpha and beta cannot be separated")
        inv_beta = (m1 * t2 - m2 * t1) / det
        alpha = (t1 * b2 - t2 * b1) / det
        if alpha < 0 or inv_beta <= 0:
            alpha = max(0.0, alpha)
            inv_beta = max((t2 - alpha * m2) / b2, 1e-18)
        beta = 1.0 / inv_beta
        burst = 0.0
        if rested is not None:
            m3, b3, t3 = rested
            burst = max(0.0, min(b3, (alpha * m3 + b3 * inv_beta - t3) * beta))
        return cls(_round(alpha), _round(beta), _round(burst))

    @classmethod
    def from_link(cls, mbps: float, alpha_s: float = 0.0) -> "AlphaBeta":
        """The nominal constants of a link of `mbps` megabit/s."""
        return cls(alpha_s, mbps * 1e6 / 8)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self):
        burst = f", burst = {self.burst_B / 1e3:.0f} kB" if self.burst_B else ""
        return f"alpha = {self.alpha_s * 1e6:.1f} us/message, beta = {self.beta_Bps * 8 / 1e6:.1f} Mbit/s{burst}"


def error(predicted: float, measured: float) -> float:
    """Relative error of a prediction, (predicted - measured) / measured (nan when nothing was measured)."""
    return (predicted - measured) / measured if measured else math.nan


def _round(x: float) -> float:
    return float(f"{x:.6g}")


STRATEGY_ALGORITHM: Dict[str, Callable] = {
    # the lab's strategies -> (algorithm, extra kwargs from the run's config), for `bench scaling`
    "sync": lambda cfg, n: ("ring", {}),
    "ps": lambda cfg, n: ("ps", {"clients": n - 1}),
    "async": lambda cfg, n: ("ps-async", {"clients": n - 1}),
    "local": lambda cfg, n: ("local", {"period": cfg.strategy.period}),
}
