"""Against the real local Slurm cluster (sbatch/test-cluster.sh): partitions, arrays, faults, accounting down."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import FAST, ROOT, Tool, attempts, started, wait_until
from slurm_cluster import SLURM_DIR, last_job, sacct_final, wait_for_state

pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.usefixtures("cluster")]


def test_two_partition_sweep_lands_in_its_partitions_and_resumes(tool: Tool) -> None:
    grid = [*FAST, "gpu=h100,a100", "kv_cache=dynamic,static"]
    first = tool.cli(*grid)
    assert "submitted array" in first.stdout and first.stdout.count("submitted array") == 2
    assert "4 submitted" in first.stdout
    early = set(c["state"] for c in tool.status(*grid)["cells"])
    assert early <= {"queued", "running", "done"}
    cells = wait_for_state(tool, grid, {"done"})
    for name in cells:
        partition = "h100" if "gpu=h100" in name else "a100"
        assert sacct_final(last_job(tool, name)) == [[last_job(tool, name), partition, "COMPLETED"]]
    again = tool.cli(*grid)
    assert "0 to run" in again.stdout and "submitted" not in again.stdout.replace("0 submitted", "")
    assert all(len(attempts(tool.results / "default" / name)) == 1 for name in cells)


def test_cancelled_cell_shows_cancelled_and_is_resubmitted(tool: Tool) -> None:
    grid = [*FAST, "gpu=rtx3070", "kv_cache=dynamic", "max_new_tokens=600", "repeats=3"]
    tool.cli(*grid)
    (name,) = wait_for_state(tool, grid, {"running"})
    subprocess.run(["scancel", last_job(tool, name)], check=True)
    cells = wait_for_state(tool, grid, {"failed"}, timeout=120)
    assert cells[name]["reason"].startswith("CANCELLED")
    again = tool.cli(*FAST, "gpu=rtx3070", "kv_cache=dynamic", "max_new_tokens=600", "repeats=1")
    assert "1 submitted" in again.stdout or "1 to run" in again.stdout


def test_memory_limit_shows_out_of_memory(tool: Tool) -> None:
    grid = [*FAST, "gpu=a100", "kv_cache=dynamic", "gpu.mem_gb=0.15"]
    tool.cli(*grid)
    (cell,) = wait_for_state(tool, grid, {"failed"}, timeout=180).values()
    assert cell["reason"].startswith("OUT_OF_MEMORY"), cell


def test_requeued_cell_completes(tool: Tool) -> None:
    grid = [*FAST, "gpu=h100", "kv_cache=static", "max_new_tokens=400", "repeats=5"]
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
        if state == "done":
            break
        time.sleep(1)
    assert "requeued" in seen and state == "done", seen
    rows = sacct_final(job)
    assert rows[-1][2] == "COMPLETED" and any(row[2] == "REQUEUED" for row in rows), rows


def test_time_limit_shows_timeout_and_is_resubmitted(tool: Tool) -> None:
    grid = [*FAST, "gpu=a100", "kv_cache=dynamic", "gpu.time_min=1", "grid.slurm.max_requeues=0",
            "logit_processor=none", "max_new_tokens=1000", "repeats=100", "sample_size=4", "batch_size=4"]
    tool.cli(*grid)
    (cell,) = wait_for_state(tool, grid, {"failed"}, timeout=240).values()
    assert cell["reason"].startswith("TIMEOUT"), cell
    again = tool.cli(*grid)
    assert "1 submitted" in again.stdout
    subprocess.run(["scancel", last_job(tool, cell["cell"])], check=True)


def test_status_answers_while_slurmdbd_is_stopped(tool: Tool) -> None:
    grid = [*FAST, "gpu=rtx3070", "kv_cache=static"]
    tool.cli(*grid)
    pid = int((SLURM_DIR / "slurmdbd.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    try:
        status = json.loads(tool.cli("--status", "--json", *grid, timeout=90).stdout)  # answers, never hangs
        assert status["partial"] and "squeue" in status["partial"]
        assert status["cells"][0]["state"] in {"queued", "running", "failed", "done"}
    finally:
        subprocess.run(["bash", str(ROOT / "sbatch" / "test-cluster.sh"), "start"], check=True, timeout=120)
    wait_for_state(tool, grid, {"done"})
