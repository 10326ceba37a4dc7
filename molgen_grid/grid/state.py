"""What state a cell is in, read from its directory alone (no config composition, no torch)."""
from __future__ import annotations

import time
from dataclasses import dataclass

from molgen_grid.grid.cluster import FAILED_STATES, ClusterView
from molgen_grid.grid.store import SUMMARY, CellStore

DONE, UNSUPPORTED, QUEUED, RUNNING, REQUEUED, FAILED, STALE, MISSING = (
    "done", "unsupported", "queued", "running", "requeued", "failed", "stale", "missing",
)
#: States whose cell needs no new run.
COMPLETE = {DONE, UNSUPPORTED}
#: States whose cell is being handled by a live process or job.
IN_FLIGHT = {QUEUED, RUNNING, REQUEUED}

#: How long a just-submitted job may be missing from sacct before the cell reads as failed.
ACCOUNTING_GRACE_S = 600
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
    #: The last attempt's log file (submitit's stdout of the job).
    log: str | None = None

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


def read_state(store: CellStore, spec_hash: str, view: ClusterView | None = None,
               lock_held: bool = False, attempts: list[dict] | None = None) -> CellState:
    """The cell's state: done/unsupported (maybe stale), queued/running/requeued, failed with a reason, missing.

    `view`: the cluster's view of the cells' Slurm jobs (None: no cell of this plan went to Slurm).
    `lock_held`: this process holds the cell's lock, so the lock says nothing about anyone else.
    `attempts`: the cell's attempts when the caller has read them already.
    """
    if not store.dir.is_dir():
        return CellState(MISSING)
    attempts = store.attempts() if attempts is None else attempts
    last = attempts[-1] if attempts else {}
    state = _state(store, spec_hash, view, lock_held, attempts, last)
    state.log = last.get("log")
    return state


def _state(store: CellStore, spec_hash: str, view: ClusterView | None, lock_held: bool, attempts: list[dict],
           last: dict) -> CellState:
    locked = (lambda: False) if lock_held else store.is_locked
    job_id = last.get("job_id")
    if store.path(SUMMARY).exists():
        summary = store.summary()
        problem = summary_problem(summary)
        if problem is None:
            since = summary.get("finished_at")
            rerun = _queued_rerun(last, since, view)
            if rerun is not None:
                return rerun
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
    recorded = error if isinstance(error, dict) and error.get("when", 0) >= last.get("when", 0) else None
    if last.get("executor") == "slurm":
        return _slurm_state(last, recorded, view or ClusterView({}, "no cluster view"))
    if recorded is not None:
        return CellState(FAILED, recorded.get("reason") or recorded.get("message"), job_id, recorded.get("when"))
    return CellState(FAILED, "killed: the attempt ended without a summary or an error record", job_id, last.get("when"))


def _queued_rerun(last: dict, finished_at: float | None, view: ClusterView | None) -> CellState | None:
    """A done cell forced again: its new Slurm job, while that waits or runs (the old summary moves on start)."""
    if view is None or last.get("executor") != "slurm" or last.get("when", 0) <= (finished_at or 0):
        return None
    state = _slurm_state(last, None, view)
    return state if state.state in IN_FLIGHT else None


def _slurm_state(last: dict, recorded: dict | None, view: ClusterView) -> CellState:
    """A Slurm cell without a summary, from its last job's state (or its error record once the job ended)."""
    job_id, since = last.get("job_id"), last.get("when")
    job = view.jobs.get(job_id)
    own_reason = recorded.get("reason") if recorded else None
    if job is None:
        if recorded is None and view.blind:
            return CellState(QUEUED, "state unknown: Slurm does not answer", job_id, since)
        if recorded is None and view.partial is None:
            if time.time() - (since or 0) < ACCOUNTING_GRACE_S:
                return CellState(QUEUED, "submitted; not yet in accounting", job_id, since)
            return CellState(FAILED, f"job {job_id} is not in the cluster's accounting (purged, or another cluster)",
                             job_id, since)
        return CellState(FAILED, own_reason or f"ended without a summary ({view.partial})", job_id, since)
    if job.state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"):
        return CellState(REQUEUED if job.requeued else QUEUED, None, job_id, since)
    if job.state in ("RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT"):
        return CellState(RUNNING, "requeued before" if job.requeued else None, job_id, since)
    if job.state in FAILED_STATES and job.state != "FAILED":
        return CellState(FAILED, job.state + (f": {own_reason}" if own_reason else ""), job_id, since)
    return CellState(FAILED, own_reason or f"job {job.state} (exit {job.exit_code}) without a summary", job_id, since)
