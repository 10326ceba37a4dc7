"""What state a cell is in, read from its directory (no config composition, no torch) and its executor's view.

The results tree says what finished (a summary, an error record) and what was launched (the attempts); the
executor of the last attempt says what became of it (a live local process, a Slurm job's state). Each executor
reads its jobs in one batched call per plan (`executors.*.view`), never one call per cell.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Protocol

from molgen_grid.grid.logfiles import log_files
from molgen_grid.grid.store import SUMMARY, CellStore, as_record, parsed_json
from molgen_grid.grid.task import REQUIRED_KEYS

DONE, UNSUPPORTED, QUEUED, RUNNING, REQUEUED, HELD, INTERRUPTED, CANCELLED, FAILED, STALE, MISSING = (
    "done", "unsupported", "queued", "running", "requeued", "held", "interrupted", "cancelled", "failed", "stale",
    "missing",
)
STATES = (DONE, UNSUPPORTED, QUEUED, RUNNING, REQUEUED, HELD, INTERRUPTED, CANCELLED, FAILED, STALE, MISSING)
#: States whose cell needs no new run.
COMPLETE = {DONE, UNSUPPORTED}
#: States whose cell is being handled by a live process or job (never launched again meanwhile).
IN_FLIGHT = {QUEUED, RUNNING, REQUEUED, HELD}
#: How long a claim from another host (whose process cannot be checked) counts as alive.
CLAIM_GRACE_S = 600


class Note(str):
    """What a staleness check says of a result it could not fully check (an input unverifiable here): the cell
    is not stale, and its status shows the note as its reason."""


@dataclass
class CellState:
    state: str
    reason: str | None = None
    job_id: str | None = None
    since: float | None = None
    #: The last attempt's log file that says most (logfiles.LogFiles.telling).
    log: str | None = None
    #: A failed cell's attempts that failed in a row, its last one included (`grid.retry.max_attempts`).
    failures: int = 0

    @property
    def age_s(self) -> float | None:
        return None if self.since is None else max(0.0, time.time() - self.since)


class JobView(Protocol):
    """An executor's view of its jobs, read once per plan."""

    #: None when the view is complete; else why it is partial (said on status).
    partial: str | None

    def job_state(self, attempt: dict, error: dict | None) -> CellState:
        """The state of the cell whose last attempt is `attempt` and has no valid summary since; `error`: its
        error record written after that attempt began, if any."""


def counts_line(counts: Mapping[str, int], states: tuple[str, ...] = STATES) -> str:
    """`3 done, 1 failed`: the count of each of `states` present, in that order (DESIGN.md's, by default)."""
    return ", ".join(f"{counts[s]} {s}" for s in states if counts.get(s))


def boot_id() -> str | None:
    """This boot of this machine: a pid recorded before a reboot names another process after it."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot): with the boot id, a process's identity, which a pid
    alone is not once pids are reused."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def process_identity(pid: int) -> dict[str, str | None]:
    """What an attempt records of the process that claimed or runs it."""
    return {"boot_id": boot_id(), "process_start": process_start(pid)}


def alive(pid: int | None, host: str | None, since: float | None, identity: dict | None = None) -> bool:
    """Whether process `pid` of `host` lives: checked on this host (the same process, not a later one given
    the same pid, when its boot and start time were recorded), trusted for a while on another."""
    if host != socket.gethostname() or not pid:
        return time.time() - (since or 0) < CLAIM_GRACE_S
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    identity = identity or {}
    if identity.get("boot_id") and identity["boot_id"] != boot_id():
        return False
    return not identity.get("process_start") or identity["process_start"] == process_start(int(pid))


def claimer_alive(attempt: dict) -> bool:
    """Whether the sweep that claimed an attempt is still alive (it submits or starts the cell next)."""
    return alive(attempt.get("claimed_by"), attempt.get("host"), attempt.get("when"), attempt)


def belongs_to(error: dict | None, attempt: dict) -> bool:
    """Whether an error record ends this attempt: the attempt it names (records written before attempts had
    ids: one written after the attempt began)."""
    if error is None:
        return False
    if error.get("attempt") or attempt.get("attempt"):
        return error.get("attempt") == attempt.get("attempt")
    return error.get("when", 0) >= attempt.get("when", 0)


def recorded_outcome(attempt: dict, error: dict | None) -> CellState | None:
    """The state an error record gives the attempt (interrupted, or failed with its reason)."""
    if error is None:
        return None
    state = INTERRUPTED if error.get("interrupted") else FAILED
    return CellState(state, error.get("reason") or error.get("message"), attempt.get("job_id"), error.get("when"))


def cancellation(attempt: dict) -> CellState | None:
    """The state of an attempt that `--cancel` stopped (cancel.py records it before it signals anything): it reads
    cancelled whatever its job or process left behind, Slurm's CANCELLED or an interrupted cell's error record."""
    record = attempt.get("cancelled")
    if not isinstance(record, dict):
        return None
    at = record.get("at")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "?"
    return CellState(CANCELLED, f"by {record.get('by')} at {when}", attempt.get("job_id"), at)


def summary_problem(summary: dict | None) -> str | None:
    """Why a summary.json does not count as done, or None when it does."""
    if summary is None:
        return "summary.json does not parse (corrupt)"
    missing = [k for k in REQUIRED_KEYS if k not in summary]
    if missing:
        return f"summary.json lacks {', '.join(missing)} (corrupt)"
    if summary["status"] not in (DONE, "ok", UNSUPPORTED):
        return f"summary.json has unknown status {summary['status']!r} (corrupt)"
    return None


def read_state(store: CellStore, stale: Callable[[dict], str | None], views: Mapping[str, JobView],
               lock_held: bool = False, attempts: list[dict] | None = None, listed: bool = False) -> CellState:
    """The cell's state: done/unsupported (maybe stale), in flight, interrupted, cancelled, failed with a reason,
    missing.

    `stale(summary)`: why a valid summary is stale now (None when it is not; a Note: not stale, said beside
    done). `views`: each executor's view of its jobs. `lock_held`: this process holds the cell's lock, so the
    lock says nothing about anyone else.
    `attempts`: the cell's attempts when the caller has read them already. `listed`: the cell's folder was
    just seen in its experiment's listing (plan.existing), so it is not looked up again.
    """
    if not listed and not os.path.isdir(store.where):
        return CellState(MISSING)
    attempts = store.attempts() if attempts is None else attempts
    last = attempts[-1] if attempts else {}
    state = _state(store, stale, views, lock_held, attempts, last)
    telling = log_files(last).telling(state.state in (FAILED, INTERRUPTED))
    state.log = None if telling is None else str(telling)
    if state.state == FAILED:
        state.failures = failed_in_a_row(attempts)
    return state


def failed_in_a_row(attempts: list[dict]) -> int:
    """How many attempts of a failed cell failed in a row: its last one, and each before it that the attempt
    after it was claimed for (`why: failed`, recorded by the claim). A forced attempt starts the count anew."""
    count = 1
    for attempt in reversed(attempts[1:]):
        if attempt.get("why") != FAILED:
            break
        count += 1
    return count


def _state(store: CellStore, stale: Callable[[dict], str | None], views: Mapping[str, JobView], lock_held: bool,
           attempts: list[dict], last: dict) -> CellState:
    locked = (lambda: False) if lock_held else store.is_locked
    job_id = last.get("job_id")
    view = views.get(last.get("executor", ""))
    data = store.read(SUMMARY)
    if data is not None:
        summary = as_record(parsed_json(data))
        problem = summary_problem(summary)
        if problem is None:
            since = summary.get("finished_at")
            if view is not None and last.get("when", 0) > (since or 0) and not last.get("cancelled"):  # forced again
                rerun = view.job_state(last, None)
                if rerun.state in IN_FLIGHT:
                    return rerun
            why = stale(summary)
            if why is not None and not isinstance(why, Note):
                return CellState(STALE, why, job_id, since)
            if summary["status"] == UNSUPPORTED:
                return CellState(UNSUPPORTED, summary.get("reason"), job_id, since)
            return CellState(DONE, why, job_id, since)
        if not locked():
            return CellState(FAILED, problem, job_id, last.get("when"))
    if not attempts:
        return CellState(RUNNING if locked() else MISSING)
    cancelled = cancellation(last)
    if cancelled is not None:
        return cancelled
    error = store.error()
    recorded = error if belongs_to(error, last) else None
    if locked():
        seen = view.job_state(last, recorded) if view is not None else None
        if seen is not None and seen.state == HELD:  # a suspended job's process still holds the lock
            return seen
        # a job that began before its id was recorded (its sweep cut short after sbatch): the view found it
        job_id = job_id or (seen.job_id if seen is not None else None)
        if last.get("started_at"):
            return CellState(RUNNING, None, job_id, last["started_at"])
        return CellState(QUEUED, "waiting for its device", job_id, last.get("when"))
    if view is None:
        return recorded_outcome(last, recorded) or CellState(
            FAILED, f"unknown executor {last.get('executor')!r} in attempts.jsonl", job_id, last.get("when"))
    return view.job_state(last, recorded)
