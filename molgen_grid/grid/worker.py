"""What runs inside a cell's own process: call the cell's code, then write its outcome.

The outcome is either `summary.json` (written last, atomically: the cell is done) or `error.json` (the cell
failed, with the exception's class, message and traceback tail). A process killed in between leaves neither,
which the plan reads as "failed (killed)".
"""
from __future__ import annotations

import importlib
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from omegaconf import OmegaConf

from molgen_grid.grid.store import ERROR, RESULTS, SUMMARY, atomic_write_json


@dataclass
class CellJob:
    """Everything a cell's process needs; pickled by submitit, so plain data only."""

    cell_dir: str
    experiment: str
    cell: str
    axes: dict[str, str]
    overrides: list[str]
    config: dict[str, Any]
    config_hash: str
    spec_hash: str
    task: str
    provenance: dict[str, Any] = field(default_factory=dict)
    #: The local sweep that holds the cell's lock: the cell's process ends when that sweep is gone, so that a
    #: cell never runs unlocked beside the next sweep's run of it. None under Slurm (the job holds the lock).
    owner_pid: int | None = None


def load_task(path: str) -> Callable[..., dict]:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def available_cpus() -> int:
    """CPUs this cell may use: Slurm's allocation when it runs under Slurm, else the machine's."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        return int(slurm)
    return len(os.sched_getaffinity(0))


def failure_reason(exc: BaseException) -> str:
    """One line for the status table. A job that submitit did not requeue after its time-limit signal (no
    requeues left) ends here before Slurm would call it TIMEOUT, so it is named TIMEOUT."""
    message = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
    if type(exc).__name__ == "UncompletedJobError" and "timed-out" in message:
        return f"TIMEOUT: {message}"
    return f"{type(exc).__name__}: {message}"


def error_record(exc: BaseException, reason: str | None = None) -> dict[str, Any]:
    return {
        "when": time.time(),
        "class": type(exc).__name__,
        "message": str(exc),
        "reason": reason or failure_reason(exc),
        "traceback": traceback.format_exception(exc)[-12:],
    }


def end_with_owner(pid: int, every_s: float = 1.0) -> None:
    """Exit this process (no outcome written: the cell reads as killed) once process `pid` has ended."""
    def watch() -> None:
        while True:
            time.sleep(every_s)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(137)
            except PermissionError:
                continue

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


def execute(job: CellJob) -> str:
    """Run one cell and record its outcome; returns the cell's status ("ok" or "unsupported")."""
    cell_dir = Path(job.cell_dir)
    started = time.time()
    if job.owner_pid is not None:
        end_with_owner(job.owner_pid)
    try:
        outcome = load_task(job.task)(OmegaConf.create(job.config), cpus=available_cpus())
    except BaseException as exc:
        atomic_write_json(cell_dir / ERROR, error_record(exc))
        raise
    status = outcome.pop("status", None)
    if status not in ("ok", "unsupported"):
        error = ValueError(f"{job.task} returned status {status!r}: expected 'ok' or 'unsupported'")
        atomic_write_json(cell_dir / ERROR, error_record(error))
        raise error
    generations = outcome.pop("generations", [])
    atomic_write_json(cell_dir / RESULTS, {"cell": job.cell, "generations": generations})
    provenance = {**outcome.pop("provenance", {}), **job.provenance, "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
    identity = {
        "experiment": job.experiment, "cell": job.cell, "status": status, "reason": outcome.get("reason"),
        "axes": job.axes, "overrides": job.overrides, "config": job.config, "config_hash": job.config_hash,
        "spec_hash": job.spec_hash,
    }
    tail = {"provenance": provenance, "started_at": started, "finished_at": time.time()}
    # The engine's keys come first and win: the cell's code cannot overwrite what identifies the cell.
    figures = {k: v for k, v in outcome.items() if k not in identity and k not in tail}
    summary = {**identity, **figures, **tail}
    atomic_write_json(cell_dir / SUMMARY, summary)
    return summary["status"]
