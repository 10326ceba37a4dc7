"""Submitting thousands of cells to the real test cluster (issue 18, item 3): a submission interrupted at any
point leaves a state from which the next run submits each cell at most once (its jobs are found by their name and
adopted), and a partition's cells are split into arrays within the cluster's MaxArraySize."""
from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import attempts, wait_until
from slurm_cluster import submissions
from studies import Study, light_study, pause_at

pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.usefixtures("cluster")]


def max_array_size() -> int:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE).group(1))


def tasks_on_the_cluster(study: Study) -> dict[str, list[str]]:
    """Every array task submitted from the study's folder, by array: squeue (-r lists each task) for those
    queued or running, sacct for those that left the queue."""
    queued = subprocess.run(["squeue", "-h", "-r", "-a", "-o", "%i|%Z"], capture_output=True, text=True,
                            check=True).stdout
    ended = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "-S", "now-1hours", "-o", "JobID,WorkDir"],
                           capture_output=True, text=True, check=True).stdout
    found: dict[str, set[str]] = {}
    for line in (queued + ended).splitlines():
        job, _, where = line.partition("|")
        if where == str(study.cwd) and re.match(r"^\d+_\d+$", job):
            found.setdefault(job.split("_")[0], set()).add(job)
    return {array: sorted(tasks) for array, tasks in found.items()}


def cancel(study: Study) -> None:
    for array in tasks_on_the_cluster(study):
        subprocess.run(["scancel", array], check=False)


def last_jobs(study: Study) -> list[str | None]:
    root = study.results / "default"
    return [(attempts(d) or [{}])[-1].get("job_id") for d in sorted(root.iterdir())
            if d.is_dir() and not d.name.startswith(".")]


def started(study: Study) -> bool:
    """Whether a job of a cut-short array (its cell's attempt has no job id) has begun: its worker recorded the
    start and holds the cell's lock."""
    root = study.results / "default"
    lasts = [(attempts(d) or [{}])[-1] for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return any(last.get("started_at") and not last.get("job_id") for last in lasts)


#: Cells that wait for a file that never comes: they stay queued or running while the jobs are counted.
def grid(study: Study, cells: int, partitions: str = "h100") -> list[str]:
    per_partition = cells // len(partitions.split(","))
    return [f"where={partitions}", "variant=a", f"count=range(1,{per_partition + 1})",
            f"wait_for={study.cwd / 'never'}"]


def interrupted_at(study: Study, tmp_path: Path, cells: list[str], function: str, when: str, call: int = 1) -> None:
    """A sweep of `cells` stopped by Ctrl-C at that exact step of submitit (`when` its `call`-th call of
    `function`), ended; the study's environment as it was."""
    env, flag = pause_at(tmp_path, "submitit.core.core", function, when, call)
    study.extra_env["PYTHONPATH"] = os.pathsep.join(p for p in (env["PYTHONPATH"], os.environ.get("PYTHONPATH")) if p)
    sweep = study.popen(*cells)
    wait_until(flag.exists, "the submission never reached its pause point", timeout=120)
    os.kill(sweep.pid, signal.SIGINT)
    out = sweep.communicate(timeout=60)[0]
    assert sweep.returncode == 130, out
    del study.extra_env["PYTHONPATH"]


@pytest.mark.parametrize("when, call, partitions", [
    ("before", 1, "h100"),        # claimed, the array's name recorded, sbatch not yet run
    ("after", 1, "h100"),         # sbatch took the array, its job ids not yet recorded
    ("before", 2, "h100,a100"),   # the first array recorded, the second claimed but not sent
    ("after", 2, "h100,a100"),    # both taken, the second's ids not yet recorded
])
def test_a_submission_stopped_at_any_point_sends_each_cell_once(tmp_path: Path, when: str, call: int,
                                                                 partitions: str) -> None:
    study = light_study(tmp_path / "study")
    cells = grid(study, 1000, partitions)
    try:
        interrupted_at(study, tmp_path, cells, "Executor.map_array", when, call)
        if (when, call) == ("after", 1):  # a task of the cut-short array runs (holds its cell's lock) when adopted
            # (with two arrays, the first one's tasks take every CPU of the test cluster: the second's wait)
            wait_until(lambda: started(study), "no task of the cut-short array started", timeout=120)
        again = study.cli(*cells, timeout=300)
        assert "experiment default: 1000 cells" in again.stdout, again.stdout
        arrays = tasks_on_the_cluster(study)
        jobs = [task for tasks in arrays.values() for task in tasks]
        assert len(jobs) == len(set(jobs)) == 1000, {a: len(t) for a, t in arrays.items()}
        recorded = last_jobs(study)
        assert None not in recorded and sorted(recorded) == sorted(jobs)  # every job is one cell's, adopted
        assert "submitted" not in study.cli(*cells, timeout=300).stdout.replace(", 0 submitted", "")
    finally:
        cancel(study)


def test_more_cells_than_max_array_size_go_out_as_several_arrays(tmp_path: Path) -> None:
    study = light_study(tmp_path / "study")
    limit = max_array_size()
    cells = grid(study, limit + 1)
    try:
        done = study.cli(*cells, timeout=300)
        assert done.stdout.count("submitted array") == 2 and f"{limit + 1} submitted" in done.stdout, done.stdout
        arrays = tasks_on_the_cluster(study)
        assert len(arrays) == 2
        for tasks in arrays.values():
            assert max(int(t.split("_")[1]) for t in tasks) < limit
        jobs = [task for tasks in arrays.values() for task in tasks]
        assert len(set(jobs)) == limit + 1 and sorted(last_jobs(study)) == sorted(jobs)
    finally:
        cancel(study)


def test_a_submission_stopped_right_after_sbatch_leaves_jobs_that_run(tmp_path: Path) -> None:
    """sbatch took the array and the sweep stops before any other step (submitit moved its job pickles into place,
    and made the jobs' log folders, only then): the jobs still find their pickles and run, and the next run
    adopts them."""
    study = light_study(tmp_path / "study")
    cells = ["where=h100", "variant=a,b"]
    try:
        interrupted_at(study, tmp_path, cells, "PicklingExecutor._submit_command", "after")  # sbatch returned
        again = study.cli(*cells, "--wait", timeout=400)
        assert "0 to run" in again.stdout and "2 cells: 2 done" in again.stdout, again.stdout
        assert len(submissions(study.cwd)) == 1  # one sbatch (sacct may print a task ended a moment ago bare)
    finally:
        cancel(study)
