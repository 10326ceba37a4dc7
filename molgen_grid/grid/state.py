"""What state a cell is in, read from its directory alone (no config composition, no torch)."""
from __future__ import annotations

import time
from dataclasses import dataclass

from molgen_grid.grid.store import CellStore

DONE, UNSUPPORTED, QUEUED, RUNNING, REQUEUED, FAILED, STALE, MISSING = (
    "done", "unsupported", "queued", "running", "requeued", "failed", "stale", "missing",
)
#: States whose cell needs no new run.
COMPLETE = {DONE, UNSUPPORTED}
#: States whose cell is being handled by a live process or job.
IN_FLIGHT = {QUEUED, RUNNING, REQUEUED}

SUMMARY_KEYS = (
    "experiment", "cell", "status", "reason", "axes", "config", "config_hash", "spec_hash",
    "metrics", "quality", "provenance",
)


@dataclass
class CellState:
    state: str
    reason: str | None = None
    job_id: str | None = None
    since: float | None = None

    @property
    def age_s(self) -> float | None:
        return None if self.since is None else max(0.0, time.time() - self.since)


def summary_problem(summary: dict | None) -> str | None:
    """Why a summary.json does not count as done, or None when it does."""
    if summary is None:
        return "summary.json does not parse (corrupt)"
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        return f"summary.json lacks {', '.join(missing)} (corrupt)"
    if summary["status"] not in (DONE, "ok", UNSUPPORTED):
        return f"summary.json has unknown status {summary['status']!r} (corrupt)"
    return None


def read_state(store: CellStore, spec_hash: str, lock_held: bool = False) -> CellState:
    """The cell's state: done/unsupported (maybe stale), running, failed with a reason, or missing.

    `lock_held`: this process holds the cell's lock, so the lock says nothing about anyone else.
    """
    locked = (lambda: False) if lock_held else store.is_locked
    if not store.dir.is_dir():
        return CellState(MISSING)
    attempts = store.attempts()
    last = attempts[-1] if attempts else {}
    job_id = last.get("job_id")
    if store.path("summary.json").exists():
        summary = store.summary()
        problem = summary_problem(summary)
        if problem is None:
            since = summary.get("finished_at")
            if summary.get("spec_hash") != spec_hash:
                return CellState(STALE, "configuration or code changed since it ran", job_id, since)
            if summary["status"] == UNSUPPORTED:
                return CellState(UNSUPPORTED, summary.get("reason"), job_id, since)
            return CellState(DONE, None, job_id, since)
        if not locked():
            return CellState(FAILED, problem, job_id, last.get("when"))
    if locked():
        return CellState(RUNNING, None, job_id, last.get("when"))
    if not attempts:
        return CellState(MISSING)
    error = store.error()
    if isinstance(error, dict) and error.get("when", 0) >= last.get("when", 0):
        return CellState(FAILED, error.get("reason") or error.get("message"), job_id, error.get("when"))
    return CellState(FAILED, "killed: the attempt ended without a summary or an error record", job_id, last.get("when"))
