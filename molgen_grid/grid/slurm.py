"""The Slurm executor: cells grouped by their resources, each group one job array, submit and return.

Cells that differ in `gpu` go to different partitions; cells that share every resource setting go out as one
`sbatch --array` (split where the cluster's MaxArraySize requires), throttled by `array_parallelism`. A job
that reaches its time limit or is preempted is requeued through submitit's checkpointing, up to
`max_requeues` times; any other failure is left for the next run to resubmit.
"""
from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import submitit

from molgen_grid.errors import InputError
from molgen_grid.grid.store import CellStore
from molgen_grid.grid.worker import CellJob, execute

DEFAULT_MAX_ARRAY_SIZE = 1001
#: A job may start while its submitter still holds the cell's lock (it keeps it until the attempt is written).
SUBMITTER_WAIT_S = 120.0


class CellRunner(submitit.helpers.Checkpointable):
    """A cell's code under Slurm, requeued by submitit on timeout or preemption (its checkpoint is a rerun).

    Under Slurm no sweep process holds the cell's lock while the job waits, so the job takes it itself: a cell
    that somebody else is running is not run twice.
    """

    def __call__(self, job: CellJob) -> str:
        store = CellStore(Path(job.cell_dir).parent, Path(job.cell_dir).name)
        with store.locked(wait_s=SUBMITTER_WAIT_S) as got:
            if not got:
                raise RuntimeError(f"cell {job.cell} is being run by another process; not run twice")
            store.retire_outcome()
            return execute(job)


@dataclass(frozen=True)
class Resources:
    """What sbatch is asked for: cells with equal resources share one job array."""

    partition: str
    gres: str | None
    cpus_per_task: int
    mem_gb: float
    time_min: int
    additional: str

    @classmethod
    def of(cls, gpu: dict[str, Any]) -> "Resources":
        return cls(
            partition=str(gpu["partition"]), gres=gpu.get("gres"), cpus_per_task=int(gpu.get("cpus_per_task", 1)),
            mem_gb=float(gpu.get("mem_gb", 4)), time_min=int(gpu.get("time_min", 60)),
            additional=json.dumps(gpu.get("additional") or {}, sort_keys=True),
        )


@dataclass
class Submitted:
    cell_job: CellJob
    job_id: str
    partition: str
    array_index: int
    log: str


def max_array_size() -> int:
    """The cluster's MaxArraySize (arrays of more tasks are split)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return DEFAULT_MAX_ARRAY_SIZE
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(match.group(1)) if match else DEFAULT_MAX_ARRAY_SIZE


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def submit(cells: list[tuple[CellJob, dict[str, Any]]], folder: Path,
           settings: dict[str, Any]) -> Iterator[list[Submitted]]:
    """Submit every cell (its job and its `gpu` config), one array per resource group, yielding each array's
    cells as soon as sbatch took it; sbatch's refusal becomes an InputError naming the partition."""
    groups: dict[Resources, list[CellJob]] = {}
    for job, gpu in cells:
        groups.setdefault(Resources.of(gpu), []).append(job)
    limit = max(1, max_array_size() - 1)
    for resources, jobs in groups.items():
        executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=int(settings["max_requeues"]))
        executor.update_parameters(
            partition=resources.partition, gres=resources.gres, cpus_per_task=resources.cpus_per_task,
            mem=f"{int(resources.mem_gb * 1024)}M", time=resources.time_min,
            array_parallelism=int(settings["array_parallelism"]), signal_delay_s=int(settings["signal_delay_s"]),
            additional_parameters=json.loads(resources.additional), job_name="molgen-grid",
        )
        for chunk in _chunks(jobs, limit):
            try:
                handles = executor.map_array(CellRunner(), chunk)
            except submitit.core.utils.FailedJobError as exc:
                lines = [line for line in str(exc).splitlines() if line.strip()]
                raise InputError(f"sbatch refused the {len(chunk)} cells for partition {resources.partition}: "
                                 f"{lines[-1] if lines else exc} (see conf/gpu/ or override gpu.*)") from None
            yield [Submitted(job, str(handle.job_id), resources.partition, index, str(handle.paths.stdout))
                   for index, (job, handle) in enumerate(zip(chunk, handles))]
