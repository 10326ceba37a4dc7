"""Against the real local Slurm cluster (sbatch/test-cluster.sh): partitions, arrays, faults, accounting down.

The cells are the light study's (tests/light: where=h100/a100/rtx3070 are the test cluster's partitions): a cell
held in flight waits for a file, one that must run out of memory holds memory_mb. The benchmark's own Slurm
sweep, end to end, is README's (tests/test_readme.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import ROOT, Light, attempts, started, wait_until
from slurm_cluster import SLURM_DIR, last_job, sacct_final, wait_for_state

pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.usefixtures("cluster")]


def test_two_partition_sweep_lands_in_its_partitions_and_resumes(light: Light) -> None:
    tool = light
    grid = ["where=h100,a100", "variant=a,b"]
    first = tool.cli(*grid)
    assert "submitted array" in first.stdout and first.stdout.count("submitted array") == 2
    assert "4 submitted" in first.stdout
    early = set(c["state"] for c in tool.status(*grid)["cells"])
    assert early <= {"queued", "running", "done"}
    cells = wait_for_state(tool, grid, {"done"})
    for name in cells:
        partition = "h100" if "where=h100" in name else "a100"
        assert sacct_final(last_job(tool, name)) == [[last_job(tool, name), partition, "COMPLETED"]]
    again = tool.cli(*grid)
    assert "0 to run" in again.stdout and "submitted" not in again.stdout.replace("0 submitted", "")
    assert all(len(attempts(tool.results / "default" / name)) == 1 for name in cells)


def test_cancelled_cell_shows_cancelled_and_is_resubmitted(light: Light) -> None:
    tool = light
    grid = ["where=rtx3070", "variant=a", f"wait_for={tool.go('a')}"]
    tool.cli(*grid)
    (name,) = wait_for_state(tool, grid, {"running"})
    subprocess.run(["scancel", last_job(tool, name)], check=True)
    cells = wait_for_state(tool, grid, {"failed"}, timeout=120)
    assert cells[name]["reason"].startswith("CANCELLED")
    tool.release("a")
    again = tool.cli(*grid)
    assert "1 submitted" in again.stdout and "1 to run" in again.stdout
    wait_for_state(tool, grid, {"done"})


def test_memory_limit_shows_out_of_memory(light: Light) -> None:
    tool = light
    grid = ["where=a100", "variant=a", "where.mem_gb=0.15", "memory_mb=600"]
    tool.cli(*grid)
    (cell,) = wait_for_state(tool, grid, {"failed"}, timeout=180).values()
    assert cell["reason"].startswith("OUT_OF_MEMORY"), cell


def test_requeued_cell_completes(light: Light) -> None:
    """The cell waits for a file until it has been requeued: the requeue lands while its code runs."""
    tool = light
    grid = ["where=h100", "variant=b", f"wait_for={tool.go('b')}"]
    tool.cli(*grid)
    (name,) = wait_for_state(tool, grid, {"running"})
    job = last_job(tool, name)
    wait_until(lambda: started(tool.results / "default" / name), "the cell's code never started")
    # what Slurm sends before a time limit: submitit checkpoints and requeues the job
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    seen = set()
    deadline = time.time() + 300
    while time.time() < deadline:
        state = tool.status(*grid)["cells"][0]["state"]
        seen.add(state)
        if state == "requeued":
            subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], capture_output=True)
            tool.release("b")
        if state == "done":
            break
        time.sleep(1)
    assert "requeued" in seen and state == "done", seen
    rows = sacct_final(job)
    assert rows[-1][2] == "COMPLETED" and any(row[2] == "REQUEUED" for row in rows), rows


def test_time_limit_shows_timeout_and_is_resubmitted_with_twice_the_time(light: Light) -> None:
    """The one slow test of retries (a real TIMEOUT takes the minute of its limit): the next run asks for twice the
    time, as the resubmitted job's own time limit shows, says so in its plan and records it."""
    tool = light
    grid = ["where=h100", "variant=a", "where.time_min=1", "grid.slurm.max_requeues=0",
            f"wait_for={tool.go('never')}"]
    tool.cli(*grid)
    (cell,) = wait_for_state(tool, grid, {"failed"}, timeout=170).values()
    assert cell["reason"].startswith("TIMEOUT"), cell
    plan = tool.cli_here("--dry-run", *grid).stdout
    assert f"run  {cell['cell']}  (failed; time_min 1 -> 2 after TIMEOUT)" in plan, plan
    again = tool.cli(*grid)
    assert "1 submitted" in again.stdout
    job = last_job(tool, cell["cell"])
    try:
        shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, check=True).stdout
        assert "TimeLimit=00:02:00" in shown, shown
        last = attempts(tool.results / "default" / cell["cell"])[-1]
        assert (last["why"], last["time_min"], last["grown"]) == ("failed", 2, "time_min 1 -> 2 after TIMEOUT")
    finally:
        subprocess.run(["scancel", job], check=True)


def test_status_answers_while_slurmdbd_is_stopped(light: Light) -> None:
    """The cell stays in flight (it waits for a file) until the status has been asked: a done cell needs no
    scheduler at all, so its status would not show what a stopped slurmdbd does to it."""
    tool = light
    grid = [f"wait_for={tool.go('cell')}", "where=rtx3070", "variant=b"]
    tool.cli(*grid)
    wait_for_state(tool, grid, {"queued", "running"})
    pid = int((SLURM_DIR / "slurmdbd.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    try:
        status = json.loads(tool.cli("--status", "--json", *grid, timeout=90).stdout)  # answers, never hangs
        assert status["partial"] and "squeue" in status["partial"]
        assert status["cells"][0]["state"] in {"queued", "running"}
    finally:
        tool.release("cell")
        subprocess.run(["bash", str(ROOT / "sbatch" / "test-cluster.sh"), "start"], check=True, timeout=120)
    wait_for_state(tool, grid, {"done"})


def default_partition() -> str:
    """The partition the cluster gives a job that names none (sinfo marks it with a star)."""
    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True).stdout
    return next(p.rstrip("*") for p in out.split() if p.endswith("*"))


def test_an_option_without_a_partition_or_with_null_fields_runs_in_the_default_partition(light: Light) -> None:
    (light.cwd / "where" / "anywhere.yaml").write_text(
        "executor: slurm\ngres: null\ncpus_per_task: null\nmem_gb: null\ntime_min: null\naccount: null\n"
        "qos: null\nconstraint: null\nadditional: null\nsetup: null\n")
    grid = ["where=anywhere", "variant=a"]
    first = light.cli(*grid)
    assert "to the default partition: 1 cell" in first.stdout, first.stdout
    (name,) = wait_for_state(light, grid, {"done"})
    job = last_job(light, name)
    # the cell is done a moment before its job ends: read accounting once it has recorded the end
    rows = wait_until(lambda: [row for row in sacct_final(job) if row[1]], "the job's partition never reached sacct",
                      60)
    assert rows == [[job, default_partition(), "COMPLETED"]]


@pytest.mark.parametrize("line, said", [
    ("setup: module load cuda", "setup='module load cuda': setup takes a list of shell lines (run before the job)"),
    ("time_min: 0", "time_min=0: time_min takes a positive integer (minutes): the cell's time limit"),
    ("additional: hold", "additional='hold': additional takes a mapping of sbatch parameters (their long names, "
                         "without --)"),
])
def test_an_option_sbatch_cannot_take_as_written_is_one_line_before_anything_is_claimed(light: Light, line: str,
                                                                                         said: str) -> None:
    """The option's file itself, not only an override of it: a setup line given as one string would run letter
    by letter."""
    (light.cwd / "where" / "odd.yaml").write_text(f"executor: slurm\npartition: a100\n{line}\n")
    done = light.cli("where=odd", "variant=a", check=False)
    assert done.returncode == 2, done.stdout
    assert done.stderr.strip() == f"molgen-grid: error: where=odd sets {said} (null or left out: the default)"
    assert not any(light.results.rglob("attempts.jsonl"))
