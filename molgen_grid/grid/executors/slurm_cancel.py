"""Cancelling a grid's Slurm jobs: one scancel per job array, never one per cell.

An array whose every task is to be cancelled is cancelled by its id (`scancel 123`); otherwise by the ids of its
tasks that are (`scancel 123_4 123_7`), so that cells of the array outside the grid, or named apart, go on. A
cell whose submission has no job id yet needs no call: its cancellation is recorded, and its job, once it
starts, does not run it (worker.superseded).
"""
from __future__ import annotations

import subprocess
from typing import Any

from molgen_grid.grid.executors.slurm_status import QUERY_TIMEOUT_S


def array_ids(stops: list[Any]) -> list[str]:
    """What one scancel is given for these tasks of one array: the array itself when they are all of its tasks
    (the submission recorded how many it had), else the tasks."""
    tasks = sorted({s.attempt["job_id"] for s in stops}, key=lambda j: (len(j), j))
    array = tasks[0].split("_")[0]
    sizes = {s.attempt.get("tasks") for s in stops}
    submissions = {s.attempt.get("submission") for s in stops}
    whole = len(sizes) == 1 and len(submissions) == 1 and sizes == {len(tasks)} and all("_" in t for t in tasks)
    return [array] if whole else tasks


def scancel(ids: list[str]) -> str | None:
    """Cancel these jobs in one call; None when scancel took them, else what it said."""
    try:
        done = subprocess.run(["scancel", *ids], capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scancel {' '.join(ids)}: {exc}"
    said = " ".join((done.stderr or done.stdout).split())
    return f"scancel {' '.join(ids)} failed: {said}" if done.returncode else None


def cancel_jobs(stops: list[Any]) -> None:
    """Cancel each stop's job, one scancel per array; each stop says where it was and any refusal."""
    arrays: dict[str, list[Any]] = {}
    for stop in stops:
        stop.where = stop.attempt.get("partition") or "the default partition"
        if stop.attempt.get("job_id"):
            arrays.setdefault(str(stop.attempt["job_id"]).split("_")[0], []).append(stop)
    for members in arrays.values():
        problem = scancel(array_ids(members))
        for stop in members:
            stop.problem = problem
