"""Changing a run while it goes: every worker applies a change at the same step.

A two-phase commit driven by the notebook (`lab.runs.Run.set`), so no worker can block another:

1. *propose*: the notebook sends the change to every engine. The engine's main thread (free,
   since training runs in a background thread) registers it and answers with the next step
   boundary its training thread will reach. That thread will not pass that boundary until the
   change is final.
2. *finalize*: the notebook takes the largest answer as the effective step and sends it back.
   Each training thread applies the change when it reaches that step. No worker has passed it,
   because each stopped at (or before) its own proposal, which is at most the maximum.

Waiting for phase 2 costs a worker one round trip (milliseconds); a worker that never receives
phase 2 (the notebook died) gives up after `timeout` seconds with a clear error.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

from .errors import WorkerError


@dataclass
class Command:
    id: int
    changes: dict
    proposal: int
    effective: Optional[int] = None


class ControlPoint:
    """Engine-side half of the protocol, shared by the engine's main thread and its training thread."""

    def __init__(self, timeout: float = 30.0):
        self.cond = threading.Condition()
        self.passed = 0                   # boundaries the training thread has gone through
        self.pending: Dict[int, Command] = {}
        self.timeout = timeout
        self.aborted: Optional[str] = None

    # -- called from the engine's main thread (ipyparallel apply) ---------------------------
    def propose(self, cmd_id: int, changes: dict) -> int:
        with self.cond:
            if cmd_id not in self.pending:
                self.pending[cmd_id] = Command(cmd_id, changes, self.passed)
            return self.pending[cmd_id].proposal

    def finalize(self, cmd_id: int, effective: int) -> None:
        with self.cond:
            self.pending[cmd_id].effective = effective
            self.cond.notify_all()

    def abort(self, why: str) -> None:
        """Stop at the next boundary without agreement (the run failed elsewhere)."""
        with self.cond:
            self.aborted = why
            self.cond.notify_all()

    # -- called from the training thread ------------------------------------------------------
    def boundary(self, step: int, idle: bool = False) -> List[dict]:
        """Called before `step`; returns the changes to apply there (in command order).

        Blocks while a command that could take effect here is not final yet. With `idle`
        (the run is paused) it also blocks until some change is due at this step.
        """
        deadline = time.monotonic() + self.timeout
        with self.cond:
            while True:
                if self.aborted:
                    raise WorkerError(self.aborted)
                unsettled = [c for c in self.pending.values() if c.effective is None and c.proposal <= step]
                due = sorted((c for c in self.pending.values() if c.effective == step), key=lambda c: c.id)
                if not unsettled and (due or not idle):
                    break
                if unsettled and time.monotonic() > deadline:
                    raise WorkerError(f"a change proposed at step {step} was never confirmed by the "
                                      f"notebook within {self.timeout:.0f} s")
                self.cond.wait(0.1 if idle else max(0.0, deadline - time.monotonic()))
            for c in due:
                del self.pending[c.id]
            return [c.changes for c in due]

    def proceed(self, step: int) -> None:
        """The training thread leaves the boundary before `step` and starts computing it."""
        with self.cond:
            self.passed = step + 1
