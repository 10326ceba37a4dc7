"""The local executor: each cell in a fresh process, one after another, through submitit.

A fresh process per cell means a crash or an out-of-memory kill in one cell never takes the sweep down, and
each cell's memory figures are its own. Cells run one at a time because they are benchmarks: two at once on
the same CPUs or GPU would measure each other.
"""
from __future__ import annotations

import time
from pathlib import Path

import submitit

from molgen_grid.grid.devices import gpu_environment
from molgen_grid.grid.worker import CellJob, execute


def start_local(job: CellJob, timeout_min: float) -> submitit.Job:
    executor = submitit.LocalExecutor(folder=Path(job.cell_dir) / "logs")
    executor.update_parameters(timeout_min=timeout_min, setup=gpu_environment())
    return executor.submit(execute, job)


def wait_local(handle: submitit.Job, poll_s: float = 0.1) -> str | None:
    """Wait for the cell's process (polled finely: submitit's own wait sleeps whole seconds); None when it
    succeeded, else the reason it failed."""
    while not handle.done():
        time.sleep(poll_s)
    try:
        handle.result()
    except submitit.core.utils.FailedJobError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return lines[-1] if lines else "failed"
    except submitit.core.utils.UncompletedJobError as exc:
        return f"killed: {str(exc).splitlines()[0]}"
    return None
