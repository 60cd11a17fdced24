"""The per-step record: every field a worker's record may carry, declared once (chapter 00).

Each step, each worker emits one flat dict (`lab.train.Trainer`), streamed to the notebook
(`lab.runs`) and saved as a line of `records.jsonl`. This module says what each key means: its
unit, which direction is better, a one-line description, and whether it is a ledger counter
(an amount accrued during the step, so sums over steps and workers mean something). Training
checks every record against it (`check`); run summaries, comparison tables (`lab.compare`) and
the dashboards take their held-out metrics, axis titles and "higher is better" from it.

A component that reports a new field (a strategy's `StepInfo.extra`, a task's extras) declares
it beside itself with `declare(...)`, so adding one never edits this file.

Example:
    >>> from lab import records
    >>> records.FIELDS["bytes_sent"].unit, records.higher_is_better("test_acc")
    ('B', True)
    >>> records.axis_title("throughput", unit="tokens")
    'throughput (tokens/s)'
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional

from .errors import LabError


@dataclass(frozen=True)
class Field:
    name: str
    unit: str                     # "" when dimensionless; "{unit}" is the task's unit (samples, tokens, env_steps)
    better: Optional[str]         # "higher", "lower", or None (an identifier, a setting, a count)
    help: str                     # one line
    label: str = ""               # a short human name for titles (default: the name)
    counter: bool = False         # accrued during the step (a ledger): sums over steps and workers mean something
    held_out: bool = False        # a held-out metric: only on evaluation steps, from rank 0

    @property
    def higher_is_better(self) -> Optional[bool]:
        return None if self.better is None else self.better == "higher"


FIELDS: Dict[str, Field] = {}
_HELD_OUT: list = []   # held_out()'s answer, cached (dashboards ask for every record)


def declare(name: str, unit: str, better: Optional[str], help: str, *, label: str = "",
            counter: bool = False, held_out: bool = False) -> Field:
    """Declare a record field (idempotent; a second, different declaration of a name is an error)."""
    if better not in (None, "higher", "lower"):
        raise ValueError(f"better must be 'higher', 'lower' or None, not {better!r}")
    f = Field(name, unit, better, help, label or name, counter, held_out)
    if FIELDS.get(name, f) != f:
        raise LabError(f"record field {name!r} is declared twice, differently: {FIELDS[name]} and {f}")
    FIELDS[name] = f
    _HELD_OUT.clear()
    return f


# -- who, when, what ------------------------------------------------------------------------------
declare("rank", "", None, "the worker that made the record")
declare("step", "", None, "training step, 0-based, the same on every worker")
declare("t", "s", None, "seconds since the run's common start, on this worker's clock", label="time since start")
declare("wall", "s", None, "Unix time when the record was made (the dashboard's lag)")
declare("unit", "", None, "what `n` counts: samples, tokens or env_steps")
declare("strategy", "", None, "the strategy that ran this step")
declare("compressor", "", None, "the gradient compressor that ran this step")
declare("changes", "", None, "live changes that took effect at this step (`lab.runs.Run.set`)")
declare("membership", "", None, "the workers changed before this step (elastic runs, `lab.elastic`): "
        "generation, workers, who left or joined, steps lost, recovery seconds")
# -- training -------------------------------------------------------------------------------------
declare("loss", "", "lower", "training loss on this worker's batch", label="training loss")
declare("n", "{unit}", None, "samples, tokens or environment steps this worker processed this step")
declare("throughput", "{unit}/s", "higher", "n / step_s: this worker's processing rate")
declare("lr", "", None, "learning rate used this step (schedule and live changes)", label="learning rate")
declare("step_s", "s", "lower", "wall time of the step: compute, communication and waiting", label="step time")
declare("compute_s", "s", "lower", "forward and backward (a straggler's slowdown included)", label="compute")
declare("staleness", "", "lower",
        "how stale the parameters this step used were: server updates (async), steps behind (ssp), "
        "local steps since the last averaging (local); 0 for sync")
declare("compression_ratio", "x", "higher", "raw_bytes / payload_bytes: how much the compressor shrank the exchange")
# -- the comm ledger (lab.comm.Ledger): accrued during the step ------------------------------------
declare("bytes_sent", "B", "lower", "bytes this worker sent", label="bytes sent", counter=True)
declare("bytes_recv", "B", "lower", "bytes this worker received", label="bytes received", counter=True)
declare("wire_bytes_sent", "B", "lower", "bytes this worker put on the wire: the algorithm's plus the transport's framing",
        label="bytes on the wire", counter=True)
declare("messages", "", "lower", "messages (collective calls and sends) this worker issued", counter=True)
declare("comm_s", "s", "lower", "measured time inside collectives and sends", label="communication", counter=True)
declare("overlap_s", "s", None, "time all-reduces were in flight while backward still computed (sync's overlap): "
        "hidden behind compute, so not part of comm_s nor of the step's time", label="communication, overlapped",
        counter=True)
declare("wait_s", "s", "lower", "measured time blocked waiting for other workers", label="waiting", counter=True)
declare("sim_link_s", "s", "lower", "SIMULATED transfer time charged by the link model (never measured)",
        label="link (SIMULATED)", counter=True)
declare("raw_bytes", "B", None, "what the same exchange would carry uncompressed in fp32", counter=True)
declare("payload_bytes", "B", "lower", "what this worker handed to the collectives", counter=True)
declare("framing_bytes", "B", "lower", "the transport's own bytes around the messages (an estimate)", counter=True)
# -- strategies' extras (StepInfo.extra) ---------------------------------------------------------
declare("server_bytes_sent", "B", "lower", "bytes the parameter server hosted on this worker sent",
        label="server bytes sent", counter=True)
declare("server_bytes_recv", "B", "lower", "bytes the parameter server hosted on this worker received",
        label="server bytes received", counter=True)
# reported only by a server with a ledger of its own (async, ssp: `Strategy.hosted_server`), so a record
# that has it carries a node of its own on the wire (lab.runs.RunData.wire)
declare("server_framing_bytes", "B", "lower", "the transport's bytes around the hosted server's messages (an estimate)",
        label="server framing bytes", counter=True)
declare("clock_lag", "steps", None, "async, ssp: how many steps this worker was ahead of the slowest when it read")
declare("staleness_updates", "", "lower", "ssp: server updates since the parameters this step used were read")
declare("averaged", "", None, "local: True on the steps where the workers averaged their parameters")
# -- tasks' extras (the loss's third value) ------------------------------------------------------
declare("episodes", "", None, "cartpole: episodes that ended during this step's rollout")
declare("entropy", "nats", None, "cartpole: mean policy entropy over the rollout (high: still exploring)")
declare("episode_return", "", "higher", "cartpole: mean return of the episodes that ended in the rollout")
declare("episode_length", "steps", None, "cartpole: mean length of the episodes that ended in the rollout")
# -- held-out evaluation (rank 0, every eval_every steps and at the last step) --------------------
declare("test_acc", "", "higher", "accuracy on the held-out split", label="test accuracy", held_out=True)
declare("return", "", "higher", "mean return of greedy evaluation episodes", label="mean return", held_out=True)
declare("perplexity", "", "lower", "exp(test_loss) on held-out text, per character", held_out=True)
declare("test_loss", "nats", "lower", "mean cross-entropy on the held-out split", label="test loss", held_out=True)
declare("eval_s", "s", "lower", "time the evaluation took (not part of step_s)", label="evaluation time")


def held_out() -> tuple:
    """Held-out metrics in order of preference (the first a run carries is its headline metric)."""
    if not _HELD_OUT:
        _HELD_OUT.append(tuple(k for k, f in FIELDS.items() if f.held_out))
    return _HELD_OUT[0]


def counters() -> tuple:
    """Fields accrued during a step (the comm ledger and what strategies add to it)."""
    return tuple(k for k, f in FIELDS.items() if f.counter)


def higher_is_better(name: str) -> Optional[bool]:
    """True / False from the declaration, None when neither direction is better."""
    return _get(name).higher_is_better


def axis_title(name: str, unit: str = "samples", prefix: str = "") -> str:
    """'label (unit)' for a plot axis; `unit` fills "{unit}", `prefix` scales it ("K" for KB)."""
    f = _get(name)
    u = f.unit.format(unit=unit)
    return f"{f.label} ({prefix}{u})" if u else f.label


def jsonable(x):
    """What `json.dumps(default=...)` writes for a value JSON cannot hold (a tensor or numpy scalar)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x.item() if hasattr(x, "item") else str(x)


def undeclared(record: dict) -> list:
    """The keys of `record` that no declaration covers."""
    return [k for k in record if k not in FIELDS]


def check(record: dict) -> dict:
    """`record` itself when every key is declared; a one-line LabError naming the others."""
    bad = undeclared(record)
    if bad:
        raise LabError(f"record field(s) {', '.join(map(repr, bad))} not declared: "
                       f"declare them with lab.records.declare beside the code that reports them")
    return record


def _get(name: str) -> Field:
    if name not in FIELDS:
        raise LabError(f"no record field {name!r} (declared: {', '.join(FIELDS)})")
    return FIELDS[name]
