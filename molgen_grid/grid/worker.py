"""The one cell process, for every kind of work (task/): on this machine or on a Slurm node, lock, check, run, record.

The cell's process takes the cell's lock (and, for a local cell, its device's machine-wide lock), checks that
its attempt is still the cell's last and that nobody finished the cell since it was claimed (a duplicate job
exits saying so, and changes nothing), retires the previous outcome, has its work compose the cell's config (the
submitting side never composes every cell) and run it, and writes its outcome before it lets the lock go: either
`summary.json` (written last, atomically and durably, after the task's own files are made durable: the cell is
done) or `error.json` (the attempt failed, with the exception's class, message and traceback tail; `interrupted`
when a Ctrl-C or SIGTERM of a local run stopped it). A process killed in between leaves neither, which the plan
reads as killed. A submitit requeue (the job's time limit or a preemption) exits the process on purpose: it is
not a failure and leaves no record, the job comes back.
"""
from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from molgen_grid.grid.devices import device_lock, visible_devices
from omegaconf import OmegaConf

from molgen_grid.grid.fingerprint import FileHashes, digest, input_hashes
from molgen_grid.grid.interrupts import end_with_owner, error_record, interrupt_on_signals
from molgen_grid.grid.store import CONFIG, ERROR, SUMMARY, CellStore, atomic_write_json, atomic_write_text, \
    current_umask
from molgen_grid.grid.task.base import CellWork, Composed
from molgen_grid.grid.task.contract import UNSUPPORTED, CellHandle, read_result

#: A job may start while its submitter still holds the cell's lock for an instant (its claim).
CLAIM_WAIT_S = 120.0
#: What a worker that does not run its cell returns (its attempt was superseded, or the cell finished).
SKIPPED = "skipped"


@dataclass
class CellJob:
    """Everything a cell's process needs; pickled by submitit (with cloudpickle: a Hydra app's function may be
    a closure)."""

    cell_dir: str
    experiment: str
    cell: str
    #: The attempt this job carries out (attempts.jsonl): it runs only while that attempt is the cell's last.
    attempt: str
    axes: dict[str, str]
    #: The overrides that reproduce the cell (the summary records them).
    overrides: list[str]
    #: What the cell runs (task/: a callable, a command, a Hydra app's function).
    work: CellWork
    #: The directory the sweep ran in: the cell's process starts there.
    project_dir: str
    executor: str
    provenance: dict[str, Any] = field(default_factory=dict)
    #: A local cell: the sweep that started it (the cell ends when that sweep is gone, so a killed sweep
    #: leaves no orphan behind) and its device's lock (directory, device). None under Slurm.
    owner_pid: int | None = None
    device_lock: tuple[str, str] | None = None
    #: Variables the cell's process sets before it runs (None: unset), e.g. the launching shell's devices.
    environment: dict[str, str | None] = field(default_factory=dict)
    #: The sweep's umask: the cell's files follow it (a group-writable tree stays so), though submitit's
    #: job files were written with a stricter one, which Slurm would hand the job.
    umask: int = field(default_factory=current_umask)


def available_cpus() -> int:
    """CPUs this cell may use: Slurm's allocation when it runs under Slurm, else the machine's."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        return int(slurm)
    return len(os.sched_getaffinity(0))


def superseded(job: CellJob, store: CellStore) -> str | None:
    """Why this job must not run its cell (read under the cell's lock), or None: a newer attempt was claimed
    since (it runs instead), the attempt was cancelled before its job started, or the cell was finished since this
    attempt was claimed (a duplicate job)."""
    attempts = store.attempts()
    mine = next((a for a in attempts if a.get("attempt") == job.attempt), None)
    if mine is None or attempts[-1] is not mine:
        newer = attempts[-1].get("attempt") if attempts else None
        return f"attempt {job.attempt} is no longer the cell's last (attempt {newer} is)"
    if mine.get("cancelled"):
        return f"attempt {job.attempt} was cancelled (--cancel) before it started"
    summary = store.summary()
    if summary is not None and summary.get("finished_at", 0) >= mine.get("when", 0):
        return f"the cell was finished by attempt {summary.get('attempt')} since attempt {job.attempt} was claimed"
    return None


def prepare_process(job: CellJob) -> None:
    """The cell's environment, working directory and import path, before the study's code is touched."""
    for name, value in job.environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    os.umask(job.umask)
    os.chdir(job.project_dir)
    if job.owner_pid is not None:
        end_with_owner(job.owner_pid)
        interrupt_on_signals()


@contextlib.contextmanager
def on_device(job: CellJob) -> Iterator[None]:
    """A local cell's device, alone across every sweep of the machine (a Slurm cell's device is Slurm's)."""
    if job.device_lock is None:
        yield
        return
    directory, device = job.device_lock
    with device_lock(Path(directory), device, lambda why: print(why, flush=True)):
        yield


def execute(job: CellJob) -> str:
    """Run one cell and record its outcome; its status ("ok", "unsupported", or SKIPPED when it did not run)."""
    store = CellStore(Path(job.cell_dir).parent, Path(job.cell_dir).name)
    prepare_process(job)
    with store.locked(wait_s=CLAIM_WAIT_S) as got:
        why_not = superseded(job, store) if got else f"another process holds cell {job.cell}'s lock"
        if why_not is not None:
            print(f"molgen-grid: not running cell {job.cell}: {why_not}", flush=True)
            return SKIPPED
        try:
            with on_device(job):
                store.retire_outcome()
                store.append_attempt({"update": True, "attempt": job.attempt, "started_at": time.time(),
                                      "node": socket.gethostname(), "worker_pid": os.getpid()})
                return _run(job, store)
        except SystemExit:
            raise  # submitit requeued the job (or the process was told to exit): not a failure of the cell
        except BaseException as exc:
            atomic_write_json(store.path(ERROR), error_record(exc, job.attempt))  # before the lock goes
            job.work.failed(exc, store.dir)
            raise


def _run(job: CellJob, store: CellStore) -> str:
    faulthandler.enable()  # a crash in native code leaves every thread's traceback in the cell's log
    started = time.time()
    composed = job.work.compose(store.dir)
    atomic_write_text(store.path(CONFIG), OmegaConf.to_yaml(composed.config))
    cell = CellHandle(name=job.cell, experiment=job.experiment, dir=store.dir, cpus=available_cpus(),
                      devices=visible_devices())

    def give_up(reason: str, detail: str = "") -> None:
        """The cell's code says, from any thread, that the cell cannot run here (it hangs): record it as
        unsupported and end the process at once, cleanly, so that no executor runs it again."""
        record(job, store, composed, started, cell, {"status": UNSUPPORTED, "reason": reason, "detail": detail})
        os._exit(0)

    cell.give_up = give_up
    return record(job, store, composed, started, cell, job.work.run(cell))


def record(job: CellJob, store: CellStore, composed: Composed, started: float, cell: CellHandle,
           outcome: Any) -> str:
    """Write the cell's summary (atomically, durably, after the task's own files); returns its status."""
    status, reason, figures = read_result(outcome, composed.origin, keep_in=store.dir)
    hashes = FileHashes()
    fingerprint = {**composed.fingerprint, "inputs": input_hashes(cell.inputs, hashes)}
    hashes.save()
    provenance = {**figures.pop("provenance", {}), **job.provenance, "host": socket.gethostname(),
                  "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
    identity = {
        "experiment": job.experiment, "cell": job.cell, "attempt": job.attempt, "status": status,
        "reason": reason, "axes": job.axes, "overrides": job.overrides, "config": composed.config,
        "config_hash": digest(json.dumps(composed.config, sort_keys=True, default=str)), "fingerprint": fingerprint,
    }
    store.make_durable()
    atomic_write_json(store.path(SUMMARY), {**identity, **figures, "provenance": provenance, "started_at": started,
                                            "finished_at": time.time()}, durable=True)
    return status
