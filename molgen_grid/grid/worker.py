"""What runs inside a cell's own process: call the cell's code, then write its outcome.

The outcome is either `summary.json` (written last, atomically: the cell is done) or `error.json` (the cell
failed, with the exception's class, message and traceback tail). A process killed in between leaves neither,
which the plan reads as "failed (killed)".
"""
from __future__ import annotations

import importlib
import os
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


def execute(job: CellJob) -> str:
    """Run one cell and record its outcome; returns the cell's status ("ok" or "unsupported")."""
    cell_dir = Path(job.cell_dir)
    started = time.time()
    try:
        outcome = load_task(job.task)(OmegaConf.create(job.config), cpus=available_cpus())
    except BaseException as exc:
        atomic_write_json(cell_dir / ERROR, error_record(exc))
        raise
    generations = outcome.pop("generations", [])
    atomic_write_json(cell_dir / RESULTS, {"cell": job.cell, "generations": generations})
    provenance = {**outcome.pop("provenance", {}), **job.provenance, "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
    summary = {
        "experiment": job.experiment,
        "cell": job.cell,
        "status": outcome.pop("status"),
        "reason": outcome.pop("reason", None),
        "axes": job.axes,
        "overrides": job.overrides,
        "config": job.config,
        "config_hash": job.config_hash,
        "spec_hash": job.spec_hash,
        **outcome,
        "provenance": provenance,
        "started_at": started,
        "finished_at": time.time(),
    }
    atomic_write_json(cell_dir / SUMMARY, summary)
    return summary["status"]
