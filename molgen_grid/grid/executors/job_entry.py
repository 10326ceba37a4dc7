"""The command every cell's job starts with, on a Slurm node or here: submitit's own, after a look at its pickle.

submitit loads the job's pickle (the cell's CellJob) before any code of the engine runs, and loading a pickle runs
code. So the executors name this module as submitit's `python` (the wrapper submitit offers for singularity and
the like): it finds the job's pickle as submitit will, refuses one that anybody but the job's own user could have
written (store.trusted, the rule for every pickle the engine loads), then hands the rest of the command line to
submitit. The executors write the pickle writable by its owner alone (store.owner_writable_only).
"""
from __future__ import annotations

import os
import runpy
import shlex
import sys
import time
from pathlib import Path

from molgen_grid.grid.store import trusted

#: How long the pickle may take to appear (a job of a submission by submitit's own path, which moves the pickle
#: into place after sbatch returned).
PICKLE_WAIT_S = 60


def command() -> str:
    """submitit's `python` for every executor: this interpreter, unbuffered, through this module."""
    return f"{shlex.quote(sys.executable)} -u -m {__name__}"


def placed_pickle(folder: str | Path, index: int | str) -> Path:
    """Where the Slurm executor writes an array task's pickle before sbatch runs: by its index, in the folder of
    its submission (its own, made before sbatch), so that no step after sbatch is needed for the job to start."""
    from submitit.core.utils import JobPaths

    return JobPaths.get_first_id_independent_folder(folder) / f"{index}_placed.pkl"


def take_placed(pickle: Path, folder: str) -> None:
    """Move this array task's placed pickle to where submitit loads it from (once: a requeued task finds
    submitit's own, its checkpoint)."""
    index = os.environ.get("SLURM_ARRAY_TASK_ID")
    if pickle.exists() or index is None:
        return
    placed = placed_pickle(folder, index)
    if placed.is_file():
        os.replace(placed, pickle)


def main() -> None:
    from submitit.core.job_environment import JobEnvironment
    from submitit.core.utils import JobPaths

    folder = sys.argv[-1]
    env = JobEnvironment()
    pickle = JobPaths(folder, job_id=env.job_id, task_id=env.global_rank).submitted_pickle
    take_placed(pickle, folder)
    deadline = time.monotonic() + PICKLE_WAIT_S
    while not pickle.exists() and time.monotonic() < deadline:
        time.sleep(1)
    if pickle.exists() and not trusted(pickle):
        print(f"molgen-grid: not loading {pickle}: a pickle runs code when loaded, and this one is a link, owned by "
              "another user or writable by others", file=sys.stderr, flush=True)
        sys.exit(1)
    sys.argv = [sys.argv[0], folder]
    runpy.run_module("submitit.core._submit", run_name="__main__")


if __name__ == "__main__":
    main()
