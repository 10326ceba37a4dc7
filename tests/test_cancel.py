"""`--cancel` and `--watch` from a second shell: cancelling stops the grid's jobs (one scancel per Slurm array; a
local cell through its process) and records them `cancelled`, which the next run reruns; watching follows cells in
flight to their end and never claims or submits anything. The cells are the light study's, in flight until the
test creates the file they wait for."""
from __future__ import annotations

import getpass
import subprocess

import pytest

from conftest import Light, attempts, started, wait_until
from slurm_cluster import last_job, logged, submissions, wait_for_state


def queued_jobs(arrays: set[str]) -> set[str]:
    """The jobs of these arrays that squeue still lists."""
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, check=True).stdout
    return {job for job in out.split() if job.split("_")[0] in arrays}


@pytest.mark.slurm
def test_cancel_stops_the_grids_slurm_jobs_with_one_scancel_per_array(light: Light, cluster: None) -> None:
    grid = [f"wait_for={light.go('cells')}", "where=h100,a100", "variant=a,b"]
    light.cli(*grid)
    cells = wait_for_state(light, grid, {"queued", "running"})  # running where the cluster's GPUs are free
    by_setting = {tuple(o for o in c["overrides"] if not o.startswith("wait_for")): n for n, c in cells.items()}
    one = by_setting[("where=h100", "variant=a")]
    jobs = {name: last_job(light, name) for name in cells}
    h100, a100 = jobs[one].split("_")[0], jobs[by_setting[("where=a100", "variant=a")]].split("_")[0]

    env, log = logged(light.cwd, "scancel")
    light.extra_env = env
    named = light.cli(*grid, "--cancel", one).stdout
    assert f"{one}: cancelled job {jobs[one]} on h100" in named and "experiment default: 1 cell cancelled" in named
    assert log.read_text().splitlines() == [f"scancel {jobs[one]}"]
    everything = light.cli(*grid, "--cancel").stdout
    light.extra_env = {}
    assert "experiment default: 3 cells cancelled" in everything, everything
    for name in set(cells) - {one}:
        where = "h100" if jobs[name].startswith(h100) else "a100"
        assert f"{name}: cancelled job {jobs[name]} on {where}" in everything
    # one call per array: the a100 array whole, the h100 array's one task left
    h100_left = next(j for n, j in jobs.items() if j.startswith(h100 + "_") and n != one)
    assert sorted(log.read_text().splitlines()[1:]) == sorted([f"scancel {a100}", f"scancel {h100_left}"])

    wait_until(lambda: not queued_jobs({h100, a100}), "the grid's jobs never left the queue", timeout=120)
    status = {c["cell"]: c for c in light.status(*grid)["cells"]}
    assert {c["state"] for c in status.values()} == {"cancelled"}
    assert all(c["reason"].startswith(f"by {getpass.getuser()} at ") for c in status.values()), status
    assert "nothing to cancel" in light.cli(*grid, "--cancel", one).stdout

    again = light.cli(*grid).stdout
    assert "experiment default: 4 cells, 4 to run, 0 done" in again and len(submissions(light.cwd)) >= 3, again
    assert all(len(attempts(light.results / "default" / name)) == 2 for name in cells)
    rerun = wait_for_state(light, grid, {"queued", "running"})
    light.cli(*grid, "--cancel")  # the shared test cluster's GPUs may be busy: the reruns are not waited for
    wait_until(lambda: not queued_jobs({j.split("_")[0] for j in (c["job_id"] for c in rerun.values())}),
               "the reruns never left the queue", timeout=120)


def test_cancel_stops_a_local_cell_that_another_process_runs(light: Light) -> None:
    grid = [f"wait_for={light.go('cell')}", "variant=a"]
    sweep = light.popen(*grid)
    cell = wait_until(lambda: next(iter(light.cell_dirs()), None), "the sweep never claimed its cell")
    wait_until(lambda: started(cell), "the cell's code never started")
    job = attempts(cell)[-1]["job_id"]

    out = light.cli(*grid, "--cancel").stdout
    assert f"{cell.name}: cancelled job {job} on this machine" in out and "1 cell cancelled" in out, out
    sweep.communicate(timeout=60)
    assert sweep.returncode == 143  # the sweep running the grid stopped too: it starts none of its cells
    (state,) = light.status(*grid)["cells"]
    assert state["state"] == "cancelled" and state["reason"].startswith(f"by {getpass.getuser()} at "), state
    assert "nothing to cancel: no cell is queued, running or held" in light.cli(*grid, "--cancel").stdout

    light.release("cell")
    again = light.cli(*grid).stdout
    assert f"{cell.name}: running (cancelled)" in again and "0 done, 1 run, 0 failed" in again, again
    assert light.states(*grid) == {cell.name: "done"}


@pytest.mark.slurm
def test_watch_follows_cells_in_flight_and_never_claims_or_submits(light: Light, cluster: None) -> None:
    grid = [f"wait_for={light.go('cells')}", "where=a100", "variant=a,b"]
    light.cli(*grid)
    cells = wait_for_state(light, grid, {"queued", "running"})
    submitted = submissions(light.cwd)
    recorded = {name: (light.results / "default" / name / "attempts.jsonl").read_text() for name in cells}

    watching = light.popen(*grid, "--watch")
    try:
        first = next(watching.stdout)
        assert first.startswith("watching experiment default: 2 cells queued or running"), first
        light.release("cells")
        out = first + watching.communicate(timeout=300)[0]
    finally:
        watching.kill()
        light.cli(*grid, "--cancel", check=False)  # nothing left in flight on the shared cluster, even on failure
    assert watching.returncode == 0, out
    assert out.rstrip().splitlines()[-1] == "watched experiment default: 2 cells: 2 done", out
    assert submissions(light.cwd) == submitted
    for name, before in recorded.items():
        now = (light.results / "default" / name / "attempts.jsonl").read_text()
        assert now.startswith(before) and '"claimed_by"' not in now[len(before):]


def test_watch_follows_a_local_cell_another_process_runs_and_claims_nothing(light: Light) -> None:
    grid = [f"wait_for={light.go('cell')}", "variant=a"]
    sweep = light.popen(*grid)
    cell = wait_until(lambda: next(iter(light.cell_dirs()), None), "the sweep never claimed its cell")
    wait_until(lambda: started(cell), "the cell's code never started")
    recorded = (cell / "attempts.jsonl").read_text()

    watching = light.popen(*grid, "--watch")
    first = next(watching.stdout)
    assert first.startswith("watching experiment default: 1 cell queued or running"), first
    light.release("cell")
    out = first + watching.communicate(timeout=120)[0]
    assert watching.returncode == 0 and sweep.wait(timeout=120) == 0, out
    assert out.rstrip().splitlines()[-1] == "watched experiment default: 1 cell: 1 done", out
    assert '"claimed_by"' not in (cell / "attempts.jsonl").read_text()[len(recorded):]
    assert len(attempts(cell)) == 1
