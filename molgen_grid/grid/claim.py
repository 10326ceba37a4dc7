"""Claiming a cell before it is launched: one protocol for every executor.

Take the cell's lock, read its state again under the lock (another sweep may have launched it meanwhile),
prepare its directory (its overrides, so that `--force NAME` can rebuild it), record the attempt (who claimed
it, where, why, under an id of its own that every later line and the job carry) and release the lock. The
executor then launches the job and completes the attempt with its id.
While the attempt has no job id yet, the cell reads as queued for as long as the claiming sweep lives, so a
second sweep never launches it too; the lock is held for an instant per cell, so a sweep of thousands of cells
never holds thousands of files open.
"""
from __future__ import annotations

import functools
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from molgen_grid.grid.estimate import ESTIMATE_KEY
from molgen_grid.grid.executors.base import Claim
from molgen_grid.grid.plan import Entry, why_run
from molgen_grid.grid.state import COMPLETE, STALE, JobView, process_identity, read_state
from molgen_grid.grid.store import OVERRIDES, atomic_write_json
from molgen_grid.grid.worker import CellJob

#: Why a cell was not claimed: another process holds it, it was finished meanwhile, or another sweep launched it
#: meanwhile (it is queued or running elsewhere).
BUSY, FINISHED, ELSEWHERE = "busy", "finished", "elsewhere"


@dataclass
class Claimer:
    """Claims cells for one executor of one sweep."""

    executor: str
    views: Mapping[str, JobView]
    stale: Callable[[Entry, dict], str | None]
    make_job: Callable[[Entry, str], CellJob]
    forced: set[str]
    stale_policy: str = "rerun"
    max_attempts: int | None = None
    #: The run time the cell is expected to take now (estimate.py), recorded in its claim; None: no estimate.
    estimate: Callable[[Entry], float | None] = lambda entry: None

    @functools.cached_property
    def identity(self) -> dict[str, str | None]:
        """This sweep's process as each claim records it: read from /proc once, not once per cell."""
        return process_identity(os.getpid())

    def __call__(self, entry: Entry, resources: dict[str, Any]) -> Claim | str:
        """The claim, or why there is none: BUSY, FINISHED or ELSEWHERE."""
        store = entry.store
        with store.locked() as got:
            if not got:
                return BUSY
            state = read_state(store, lambda summary: self.stale(entry, summary), self.views, lock_held=True)
            why = why_run(state, entry.cell.name in self.forced, self.stale_policy, self.max_attempts)
            if why is None:
                return FINISHED if state.state in COMPLETE or state.state == STALE else ELSEWHERE
            atomic_write_json(store.path(OVERRIDES), entry.cell.overrides)
            attempt = uuid.uuid4().hex[:12]
            expected = self.estimate(entry)
            store.append_attempt({"attempt": attempt, "executor": self.executor, "host": socket.gethostname(),
                                  "claimed_by": os.getpid(), **self.identity, "why": why,
                                  **({ESTIMATE_KEY: round(expected, 3)} if expected is not None else {})})
            return Claim(entry, self.make_job(entry, attempt), resources)
