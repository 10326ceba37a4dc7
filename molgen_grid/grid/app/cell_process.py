"""What runs in an app job's own process: Hydra's state restored, the app's function run through `run_job`,
the outcome recorded.

The sweep ships everything pickled with cloudpickle (the app's function may be a closure or live in `__main__`):
Hydra's singletons (`Singleton.get_state()`: the config store, registered resolvers), the job's config composed
in the sweep's process (so `hydra.runtime.cwd` is where the app was started) and the sweep's import path. The
process takes the cell's lock and runs only while its attempt is the cell's last, as the engine's cells do
(worker.py); the summary is written last, atomically: it is what makes the job done.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, run_job, setup_globals
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf

from molgen_grid.grid.app.jobs import json_value, task_config
from molgen_grid.grid.interrupts import end_with_owner, error_record, interrupt_on_signals
from molgen_grid.grid.store import ERROR, SUMMARY, CellStore, atomic_write_json
from molgen_grid.grid.worker import CLAIM_WAIT_S, superseded

#: The file beside summary.json that holds a return value JSON cannot hold.
VALUE_FILE = "return_value.pkl"


@dataclass
class AppCellJob:
    """Everything the job's process needs (pickled by submitit with cloudpickle)."""

    out_dir: str
    cell: str
    attempt: str
    idx: int
    overrides: list[str]
    cfg: DictConfig
    task_function: Callable
    hydra_context: HydraContext
    singleton_state: Any
    fingerprint: dict[str, Any]
    cwd: str
    sys_path: list[str] = field(default_factory=list)
    #: A local job ends when its sweep is gone (None under Slurm).
    owner_pid: int | None = None


def run_app_cell(job: AppCellJob) -> JobReturn | None:
    """Run the job once, under the cell's lock; None when another attempt took the cell meanwhile."""
    sys.path[:0] = [p for p in job.sys_path if p not in sys.path]
    os.chdir(job.cwd)
    if job.owner_pid is not None:
        end_with_owner(job.owner_pid)
        interrupt_on_signals()
    setup_globals()
    Singleton.set_state(job.singleton_state)
    out = Path(job.out_dir)
    store = CellStore(out.parent, out.name)
    with store.locked(wait_s=CLAIM_WAIT_S) as got:
        why_not = superseded(job, store) if got else f"another process holds cell {job.cell}'s lock"  # type: ignore
        if why_not is not None:
            print(f"molgen-grid: not running {job.cell}: {why_not}", flush=True)
            return None
        try:
            store.retire_outcome()
            started = time.time()
            store.append_attempt({"update": True, "attempt": job.attempt, "started_at": started,
                                  "node": socket.gethostname(), "worker_pid": os.getpid()})
            ret = run_job(hydra_context=job.hydra_context, task_function=job.task_function, config=job.cfg,
                          job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
            if ret.status == JobStatus.COMPLETED:
                record(job, store, ret._return_value, started)
            else:
                atomic_write_json(store.path(ERROR), error_record(ret._return_value, job.attempt))
            return ret
        except SystemExit:
            raise  # a requeue, or the process told to exit: not the job's failure
        except BaseException as exc:
            atomic_write_json(store.path(ERROR), error_record(exc, job.attempt))
            raise


def record(job: AppCellJob, store: CellStore, value: Any, started: float) -> None:
    """The cell's summary, written last, atomically and durably: the app's return value (JSON, else pickled
    beside it), the job's config and the fingerprint that staleness compares."""
    import cloudpickle

    stored: dict[str, Any] = {"value": value}
    if not json_value(value):
        (store.dir / VALUE_FILE).write_bytes(cloudpickle.dumps(value))
        stored = {"value": None, "value_file": VALUE_FILE, "value_type": type(value).__name__}
    cfg = task_config(job.cfg)
    store.make_durable()
    atomic_write_json(store.path(SUMMARY), {
        "experiment": str(job.cfg.hydra.job.name), "cell": job.cell, "attempt": job.attempt, "status": "ok",
        "axes": {}, "overrides": job.overrides, "config": OmegaConf.to_container(cfg, resolve=False),
        "config_hash": job.fingerprint["config"], "fingerprint": job.fingerprint, **stored,
        "provenance": {"host": socket.gethostname(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")},
        "started_at": started, "finished_at": time.time(),
    }, durable=True)
