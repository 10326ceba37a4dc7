"""Submitting 10,368 Slurm cells to the local test cluster, whole command, this checkout beside a baseline.

The grid: attention x kv_cache x template_building x tokenizer_cache x logit_processor x gpu=h100,a100,rtx3070 x
batch_size 1..9 with `--limit 1` (10,368 cells, each partition's 3,456 in arrays of MaxArraySize - 1). Printed per
checkout: the whole `sbatch/run.sh` command's wall time, the sbatch calls (counted by a wrapper first on PATH) and
the arrays submitted; every array is cancelled right after. The baseline is another commit checked out as a
`git worktree` (main at 1603bf0 by default), timed in the same run. Target: under 10 s, one sbatch per array.

    .venv/bin/python benchmarks/scale_submit.py [--baseline COMMIT] [--cells small]

`submission` and `compared` are what benchmarks/scale.py calls.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
AXES = ["attention=glob(*)", "kv_cache=glob(*)", "template_building=serial,parallel", "tokenizer_cache=none,cached"]
GRIDS = {
    "10k": AXES + ["logit_processor=glob(*)", "gpu=h100,a100,rtx3070", "batch_size=range(1,10)"],
    "1k": AXES + ["logit_processor=none,python,tensor", "gpu=h100,a100", "batch_size=1,2"],
}
BASELINE = "1603bf0"


@dataclass
class Submission:
    """One timed submission: what a reader compares."""

    label: str
    cells: int
    seconds: float
    sbatch_calls: int
    arrays: int

    def line(self) -> str:
        return (f"submit {self.label}: {self.cells} Slurm cells in {self.seconds:.2f} s, {self.sbatch_calls} sbatch "
                f"calls, {self.arrays} arrays (target < 10 s whole command, one sbatch per array)")


def counting_sbatch(folder: Path) -> Path:
    """A `sbatch` first on PATH that logs each call, then runs the real one; the log's path."""
    real = shutil.which("sbatch")
    if real is None:
        sys.exit("no sbatch here: start the test cluster (bash sbatch/test-cluster.sh start)")
    log = folder / "sbatch-calls"
    (folder / "sbatch").write_text(f'#!/bin/sh\necho x >> "{log}"\nexec "{real}" "$@"\n')
    (folder / "sbatch").chmod(0o755)
    return log


def submission(checkout: Path, label: str, grid: list[str], work: Path) -> Submission:
    """The grid submitted by `checkout`'s sbatch/run.sh (under ulimit -n 1024), timed whole; its arrays cancelled
    right after."""
    shims = work / f"bin-{label}"
    shims.mkdir(parents=True)
    log = counting_sbatch(shims)
    env = {**os.environ, "MOLGEN_PYTHON": sys.executable, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    args = ["bash", str(checkout / "sbatch" / "run.sh"), f"grid.results_dir={work / f'results-{label}'}",
            "--limit", "1", *grid]
    line = "ulimit -n 1024 && exec " + " ".join(f"'{a}'" for a in args)
    started = time.perf_counter()
    done = subprocess.run(["bash", "-c", line], env=env, cwd=checkout, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    said = [line for line in done.stdout.splitlines() if line.startswith("submitted array")]
    arrays = [line.split()[2] for line in said]
    if arrays:
        subprocess.run(["scancel", *arrays], check=False)
    if done.returncode != 0:
        sys.exit(f"{label} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    calls = len(log.read_text().splitlines()) if log.exists() else 0
    cells = sum(int(line.split(": ")[1].split()[0]) for line in said)
    return Submission(label, cells, seconds, calls, len(arrays))


@contextlib.contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """`commit` checked out beside this one (a detached `git worktree`), removed after."""
    where = Path(tempfile.mkdtemp(prefix="scale-submit-base-")) / "checkout"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(where), commit], check=True)
    try:
        yield where
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], check=False)


def compared(grid: list[str], baseline: str | None = BASELINE) -> list[Submission]:
    """This checkout's submission of `grid`, then the baseline's, in one run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = [submission(ROOT, "this checkout", grid, Path(tmp))]
        if baseline:
            with worktree(baseline) as base:
                out.append(submission(base, f"baseline {baseline}", grid, Path(tmp)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help="the commit to time beside ('' for none)")
    parser.add_argument("--cells", choices=sorted(GRIDS), default="10k")
    args = parser.parse_args()
    runs = compared(GRIDS[args.cells], args.baseline or None)
    for run in runs:
        print(run.line())
    if len(runs) == 2:
        print(f"submit: this checkout takes {runs[0].seconds / runs[1].seconds:.2f}x the baseline's time")


if __name__ == "__main__":
    main()
