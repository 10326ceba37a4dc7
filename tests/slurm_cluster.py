"""The local Slurm test cluster as the tests see it (conftest's `cluster` starts it): asked through sacct, and
the cells' states waited for (never fixed sleeps)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from conftest import Tool, attempts

SLURM_DIR = Path(os.environ.get("MOLGEN_SLURM_DIR", "/var/tmp/molgen-grid-slurm"))
LIVE = {"queued", "running", "requeued"}


def sacct(job_id: str) -> list[list[str]]:
    out = subprocess.run(["sacct", "-D", "-X", "-n", "-P", "-o", "JobID,Partition,State", "-j", job_id.split("_")[0]],
                         capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line.split("|")[0] == job_id]


def sacct_final(job_id: str, timeout: float = 60) -> list[list[str]]:
    """sacct's rows for a job once it has ended (a cell's summary is written just before its job ends)."""
    deadline = time.time() + timeout
    while True:
        rows = sacct(job_id)
        if rows and rows[-1][2] not in {"RUNNING", "COMPLETING", "PENDING", "REQUEUED"} or time.time() > deadline:
            return rows
        time.sleep(1)


def submissions(cwd: Path) -> set[str]:
    """Every job submitted from this directory (each sbatch once, whatever its array's size): squeue knows a job
    the moment it is submitted, sacct once slurmdbd has recorded it and after it has left the queue."""
    queued = subprocess.run(["squeue", "-h", "-a", "-o", "%F|%Z"], capture_output=True, text=True,
                            check=True).stdout
    accounted = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "-o", "JobID,WorkDir", "-S", "now-1days"],
                               capture_output=True, text=True, check=True).stdout
    return {line.split("|")[0].split("_")[0] for line in (queued + accounted).splitlines()
            if line.split("|")[-1] == str(cwd)}


def wait_for_state(tool: Tool, args: list[str], wanted: set[str], timeout: float = 300,
                   every: bool = True) -> dict[str, dict]:
    """Poll --status until every cell (or, with every=False, one cell) is in `wanted`; fail early once all have
    ended elsewhere."""
    deadline = time.time() + timeout
    while True:
        cells = {c["cell"]: c for c in tool.status(*args)["cells"]}
        reached = [c["state"] in wanted for c in cells.values()]
        if all(reached) if every else any(reached):
            return cells
        ended = all(c["state"] not in LIVE for c in cells.values())
        if time.time() > deadline or (ended and not wanted & LIVE):
            raise AssertionError(f"cells never reached {wanted}: {cells}")
        time.sleep(1)


def logged(folder: Path, *commands: str) -> tuple[dict[str, str], Path]:
    """A PATH whose `commands` (`scancel`, `sacct`...) log each call, `NAME ARGS` one line a call in the one log
    returned, and run the real ones (none where Slurm is not installed: the call then fails)."""
    bin_dir, log = folder / "bin", folder / "slurm-calls.log"
    bin_dir.mkdir()
    for name in commands:
        real = shutil.which(name)
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n' + (f'exec {real} "$@"\n' if real else "exit 1\n"))
        wrapper.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, log


def last_job(tool: Tool, cell: str, experiment: str = "default") -> str:
    return attempts(tool.results / experiment / cell)[-1]["job_id"]
