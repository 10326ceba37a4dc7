"""Slurm cells submitted to the local test cluster, whole command, each checkout in turn: a section of
benchmarks/scale.py (its entry point), which owns the grids (10,080 cells: 3,360 a partition, in arrays of
MaxArraySize - 1) and the checkouts.

Printed per checkout: the whole `sbatch/run.sh --limit 1` command's wall time, the sbatch calls (counted by a
wrapper first on PATH) and the arrays submitted; every array is cancelled right after, by its id. Target: 10,000
cells under 10 s, one sbatch per array. The controller keeps a cancelled job for MinJobAge (300 s by default)
and sbatch slows as its job table fills (here 10,080 cells took 8.7 s to a quiet controller, 18 s as the fourth
submission in two minutes), so each submission waits until the controller holds no cancelled job (those of
the submissions before it): every checkout meets the same controller.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from scale import Checkout


@dataclass
class Submission:
    """One timed submission: what a reader compares."""

    label: str
    cells: int
    seconds: float
    sbatch_calls: int
    arrays: int

    def line(self) -> str:
        return (f"submit: {self.label}: {self.cells:,} Slurm cells in {self.seconds:.2f} s, {self.sbatch_calls} "
                f"sbatch calls, {self.arrays} arrays (target < 10 s whole command, one sbatch per array)")


def counting_sbatch(folder: Path) -> Path:
    """A `sbatch` first on PATH that logs each call, then runs the real one; the log's path."""
    real = shutil.which("sbatch")
    if real is None:
        sys.exit("no sbatch here: start the test cluster (bash sbatch/test-cluster.sh start), or give --skip-slurm")
    log = folder / "sbatch-calls"
    (folder / "sbatch").write_text(f'#!/bin/sh\necho x >> "{log}"\nexec "{real}" "$@"\n')
    (folder / "sbatch").chmod(0o755)
    return log


def cancelled_jobs_held() -> int:
    """The cancelled jobs the controller still holds (it forgets them after MinJobAge): what earlier
    submissions of this benchmark left."""
    out = subprocess.run(["squeue", "-h", "-r", "-t", "CANCELLED", "-o", "%i"], capture_output=True,
                         text=True).stdout
    return len(out.splitlines())


def wait_for_purge(limit_s: float = 400) -> None:
    """Until the controller holds no cancelled job, or `limit_s`: each submission meets a controller that
    holds none of the jobs submitted and cancelled before it."""
    deadline = time.monotonic() + limit_s
    while cancelled_jobs_held() and time.monotonic() < deadline:
        time.sleep(5)


def submission(tree: Checkout, grid: list[str], work: Path) -> Submission:
    """The grid submitted by the tree's sbatch/run.sh with `--limit 1`, timed whole; its arrays cancelled right
    after, before any failure is reported."""
    shims = work / f"bin-{tree.label.replace(' ', '-')}"
    shims.mkdir(parents=True)
    log = counting_sbatch(shims)
    results = work / f"results-{tree.label.replace(' ', '-')}"
    timing, done = tree.run([*tree.front(results), "--limit", "1", *grid], tree.root, tree.env(bin_dir=shims),
                            check=False)
    said = [line for line in done.stdout.splitlines() if line.startswith("submitted array")]
    arrays = [line.split()[2] for line in said]
    if arrays:
        subprocess.run(["scancel", *arrays], check=False)
    if done.returncode != 0:
        sys.exit(f"{tree.label}: the submission failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    calls = len(log.read_text().splitlines()) if log.exists() else 0
    cells = sum(int(line.split(": ")[1].split()[0]) for line in said)
    return Submission(tree.label, cells, timing.wall, calls, len(arrays))


def submissions(trees: list[Checkout], grid: list[str], work: Path,
                emit: Callable[[str], None] = print) -> list[Submission]:
    """The grid submitted by each tree in turn (the change last), each to a controller that holds no job of the
    one before; one line each, and change / baseline."""
    runs = []
    for tree in trees:
        wait_for_purge()
        runs.append(submission(tree, grid, work))
    for run in runs:
        emit(run.line())
    if len(runs) > 1:
        emit(f"submit: change/baseline {runs[-1].seconds / runs[0].seconds:.2f} (wall)")
    return runs
