"""An app's jobs on Slurm, with launcher keys in the style of hydra-submitit-launcher: one job array per
sweep batch, submit and return (the jobs' states are read back from the cluster on the next run or `status`),
or, with `wait`, block until every job ended and return its value.

The cluster's view of the jobs (queued, running, held, ended with a Slurm state) is the engine's
(executors/slurm.py), so an app's job reads exactly as an engine cell does.
"""
from __future__ import annotations

import contextlib
import io
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import submitit

from molgen_grid.errors import InputError
from molgen_grid.grid.app.cell_process import AppCellJob, run_app_cell
from molgen_grid.grid.executors.slurm import SlurmView, job_name
from molgen_grid.grid.executors.slurm_status import cluster_view, slurm_answers
from molgen_grid.grid.store import CellStore

NAME = "slurm"


@dataclass(frozen=True)
class SlurmKeys:
    """What sbatch is asked for (hydra-submitit-launcher's names)."""

    partition: Optional[str] = None
    gres: Optional[str] = None
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[float] = None
    timeout_min: int = 60
    array_parallelism: int = 256


class AppRunner(submitit.helpers.Checkpointable):
    """The job's process under Slurm: requeued by submitit on timeout or preemption (a rerun of the job)."""

    def __call__(self, job: AppCellJob) -> Any:
        return run_app_cell(job)


def slurm_view(attempts: list[dict]) -> SlurmView:
    """The cluster's word on these attempts' jobs, in one sacct call."""
    unresolved = {job_name(a["submission"]): a.get("when") or 0 for a in attempts
                  if a.get("submission") and not a.get("job_id")}
    return SlurmView(cluster_view([str(a["job_id"]) for a in attempts if a.get("job_id")], unresolved))


def submit(jobs: list[AppCellJob], stores: list[CellStore], keys: SlurmKeys, folder: Path) -> list[submitit.Job]:
    """One job array for these claimed jobs; each attempt records its submission's token first (a submission
    cut short after sbatch took it is adopted by its job name), then its job id."""
    if not slurm_answers():
        raise InputError("hydra.launcher.executor=slurm needs a Slurm cluster and no Slurm controller answers here "
                         "(scontrol ping)")
    token = uuid.uuid4().hex[:12]
    for index, (job, store) in enumerate(zip(jobs, stores)):
        store.append_attempt({"update": True, "attempt": job.attempt, "submission": token, "index": index,
                              "partition": keys.partition})
    executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=0)
    params: dict[str, Any] = {"time": keys.timeout_min, "array_parallelism": keys.array_parallelism,
                              "job_name": job_name(token)}
    params.update({k: v for k, v in (("partition", keys.partition), ("gres", keys.gres),
                                     ("cpus_per_task", keys.cpus_per_task)) if v is not None})
    if keys.mem_gb is not None:
        params["mem"] = f"{int(keys.mem_gb * 1024)}M"
    executor.update_parameters(**params)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's refusal; ours says it once
            handles = executor.map_array(AppRunner(), jobs)
    except submitit.core.utils.FailedJobError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        for job, store in zip(jobs, stores):
            store.append_attempt({"update": True, "attempt": job.attempt, "withdrawn": "sbatch refused it"})
        raise InputError(f"sbatch refused the {len(jobs)} jobs: {lines[-1] if lines else exc}") from None
    for job, store, handle in zip(jobs, stores, handles):
        store.append_attempt({"update": True, "attempt": job.attempt, "job_id": str(handle.job_id),
                              "log": str(handle.paths.stdout)})
    return handles
