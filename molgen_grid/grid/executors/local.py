"""The local executor: each cell in a fresh process on this machine, one after another, through submitit.

A fresh process per cell means a crash or an out-of-memory kill in one cell never takes the sweep down, and
each cell's memory figures are its own. Cells run one at a time, and one per device across every sweep of the
machine (the cell's process takes its device's lock, devices.py), because they are benchmarks: two at once on
the same processor would measure each other. The cell's process sees the launching shell's devices (submitit's
LocalExecutor would hide them: it sets CUDA_VISIBLE_DEVICES to its own, empty, list), restored by the cell's
process before anything touches CUDA.

Ctrl-C or SIGTERM while a cell runs stops its process, which records itself as interrupted, and the sweep
raises on (the front door says what happened and exits 130 or 143).
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import submitit
from omegaconf import DictConfig

from molgen_grid.errors import InputError
from molgen_grid.grid.devices import device_lock_holder, local_device
from molgen_grid.grid.executors import job_entry
from molgen_grid.grid.executors.base import Claim, Events
from molgen_grid.grid.executors.local_cancel import STOP_WAIT_S, stop_cells
from molgen_grid.grid.interrupts import error_record
from molgen_grid.grid.resources import option_problem
from molgen_grid.grid.state import FAILED, QUEUED, CellState, alive, belongs_to, claimer_alive, process_identity, \
    recorded_outcome
from molgen_grid.grid.store import ERROR, LOGS, CellStore, atomic_write_json, folder, owner_writable_only
from molgen_grid.grid.worker import execute

NAME = "local"
#: How often the sweep looks at its cell's process (submitit's own wait sleeps whole seconds).
POLL_S = 0.1
#: What submitit's local controller is given when a cell has no time limit (it needs a number): a century.
NO_TIME_LIMIT_MIN = 100 * 365 * 24 * 60


class LocalView:
    partial: str | None = None

    def job_state(self, attempt: dict, error: dict | None) -> CellState:
        """A local attempt whose cell is not locked: starting, ended with a record, or killed."""
        job_id, since = attempt.get("job_id"), attempt.get("when")
        recorded = recorded_outcome(attempt, error)
        if recorded is not None:
            return recorded
        if job_id is None:
            if claimer_alive(attempt):
                return CellState(QUEUED, f"claimed by the sweep pid {attempt.get('claimed_by')}", None, since)
            return CellState(FAILED, "killed: its sweep ended before starting it", None, since)
        if alive(int(job_id), attempt.get("host"), since, attempt.get("job_identity")) \
                and attempt.get("started_at") is None:
            return CellState(QUEUED, "starting", job_id, since)
        return CellState(FAILED, "killed: the attempt ended without a summary or an error record", job_id, since)


class LocalExecutor:
    name = NAME
    blocking = True

    def __init__(self, settings: DictConfig, root: Path) -> None:
        self.locks = Path(settings.device_locks)

    def check(self, options: dict[str, dict[str, Any]]) -> None:
        """Anything runs here; a time limit under its former name is named (it would be ignored), and so are a
        device this machine cannot give and a value a resource key does not take, before any cell is claimed."""
        for label, option in options.items():
            if "timeout_min" in option:
                raise InputError(f"{label} sets timeout_min: a cell's time limit is time_min, here as on Slurm "
                                 f"(rename the key)")
            try:
                local_device(str(option.get("device", "auto")))
            except InputError as exc:
                raise InputError(f"{label}: {exc}") from None
            problem = option_problem(label, option)
            if problem:
                raise InputError(problem)

    def view(self, attempts: list[dict]) -> LocalView:
        return LocalView()

    def cancel(self, stops: list[Any], whole_grid: bool) -> None:
        """Stop these cells' processes (cancel.py); the whole grid: the sweeps that run them too."""
        stop_cells(stops, whole_grid)

    def request(self, entry: Any, option: dict[str, Any], claimed: str | None = None) -> tuple[dict, str | None]:
        """This machine's cells ask for what their option says, however the last attempt ended."""
        return option, None

    def admit(self, options: list[dict[str, Any]], noun: str = "cell") -> tuple[list[bool], list[str]]:
        """This machine has no submission limit: every cell may run (cells wait for a device, not for room)."""
        return [True] * len(options), []

    def prefetch(self) -> None:
        """Nothing to ask: this machine has no limit."""

    def launch(self, claims: list[Claim], events: Events) -> None:
        for claim in claims:
            self._run(claim, events)

    def _run(self, claim: Claim, events: Events) -> None:
        device = local_device(str(claim.resources.get("device", "auto")))
        job = replace(claim.job, owner_pid=os.getpid(), device_lock=(str(self.locks), device),
                      environment={"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")})
        holder = device_lock_holder(self.locks, device)
        if holder:
            events.waiting(claim, f"waiting for the {device} (in use by {holder})")
        store = claim.entry.store
        logs = attempt_logs(store.dir, job.attempt)
        folder(folder(logs.parent) / logs.name)  # with the sweep's umask: another member of a group adds to it
        executor = submitit.LocalExecutor(folder=logs, python=job_entry.command())
        executor.update_parameters(timeout_min=time_limit_min(claim.resources))
        started = time.time()
        handle = start_ignoring_ctrl_c(executor, job)
        store.append_attempt({"update": True, "attempt": job.attempt, "job_id": str(handle.job_id),
                              "job_identity": process_identity(int(handle.job_id)), "log": str(handle.paths.stdout),
                              "err_log": str(handle.paths.stderr), "device": device})
        events.started(claim)
        try:
            wait(handle)
        except BaseException as exc:
            stop(handle)
            record_interruption(store, exc, job.attempt)
            raise
        events.finished(claim, outcome(store, job.attempt), time.time() - started)


def attempt_logs(cell_dir: Path, attempt: str) -> Path:
    """The folder of one attempt's logs, `logs/<when it started>-<attempt id>`: a rerun's files never sit beside
    the previous attempt's (each attempt's line in attempts.jsonl names its own), and `ls logs/` lists them in
    the order they ran."""
    return cell_dir / LOGS / f"{time.strftime('%Y%m%d-%H%M%S')}-{attempt}"


def time_limit_min(resources: dict[str, Any]) -> float:
    """The cell's time limit: its option's `time_min`, else none (a hidden limit would kill a long cell of a
    study that never asked for one)."""
    limit = resources.get("time_min")
    return NO_TIME_LIMIT_MIN if limit is None else float(limit)


def start_ignoring_ctrl_c(executor: submitit.LocalExecutor, job: Any) -> submitit.Job:
    """Start the cell's process with Ctrl-C ignored by what does not handle it: submitit's controller would
    print a KeyboardInterrupt traceback on the terminal. The cell's own process handles it (worker.py), and
    the sweep, which gets it too, stops the controller itself."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with owner_writable_only():  # submitit's pickle of the job, loaded by the cell's process
            return executor.submit(execute, job)
    finally:
        signal.signal(signal.SIGINT, previous)


def wait(handle: submitit.Job) -> None:
    """Wait for the cell's process, polled finely (submitit's own wait sleeps whole seconds)."""
    while not handle.done():
        time.sleep(POLL_S)


def outcome(store: CellStore, attempt: str) -> str | None:
    """How the cell's process ended, from what it recorded (a process that gives up, e.g. on a hang, exits at
    once and leaves submitit no result): None when it wrote its summary, else the reason it failed."""
    mine = store.attempt(attempt) or {}
    summary, error = store.summary(), store.error()
    if summary is not None and summary.get("attempt") == attempt:
        return None
    if isinstance(mine.get("cancelled"), dict):
        return f"cancelled by {mine['cancelled'].get('by')} (--cancel)"
    if belongs_to(error, mine):
        return error.get("reason") or error.get("message") or "failed"
    if summary is not None and summary.get("finished_at", 0) >= mine.get("when", 0):
        return None  # finished by another process meanwhile: this attempt did not run (its log says why)
    return "killed: the cell's process ended without a summary or an error record (see its log)"


def stop(handle: submitit.Job) -> None:
    """End the cell's process and wait for it, so that it records itself as interrupted before the sweep
    reports and exits. Ctrl-C reached it already with the terminal's process group; a SIGTERM to the sweep
    alone is passed on here, to submitit's controller (its job id is its pid), which passes it to the cell."""
    deadline = time.monotonic() + STOP_WAIT_S
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(handle.job_id), signal.SIGTERM)
    while not handle.done() and time.monotonic() < deadline:
        time.sleep(POLL_S)
    if not handle.done():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(handle.job_id), signal.SIGKILL)


def record_interruption(store: CellStore, exc: BaseException, attempt: str) -> None:
    """The cell's process records its own interruption; if it was killed before it could, the sweep does."""
    mine = store.attempt(attempt) or {}
    summary = store.summary()
    if (summary is None or summary.get("attempt") != attempt) and not belongs_to(store.error(), mine):
        atomic_write_json(store.path(ERROR), error_record(exc, attempt))
