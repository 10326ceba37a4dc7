"""A Hydra app's multirun at a lab's scale: status, dry run and the skip check of a plain app's 1,000 and 10,000
jobs, and its 1,000 jobs submitted to the test cluster beside hydra-submitit-launcher.

The app is a plain one (`@hydra.main`, Hydra's basic sweeper, `override hydra/launcher: grid`) with two swept keys,
`lr` x `seed`. Every figure is the wall time of the whole command (`python app.py -m ...`), best of `--repeat`,
taken with this tree's molgen_grid and beside it a baseline tree's (`--baseline`, e.g. a `git worktree` of main)
in the same run, so they share the machine's load. The skip check is a plain rerun of a multirun whose jobs are
all done (their summaries written from one real job's, each with its own config and value): it plans, finds
nothing to run and returns every job's stored value to the sweeper. The baseline composes every job (about 85 ms
each), so it runs only up to `--baseline-jobs`; above it the line says so.

The submission (`--slurm`) goes to the local test cluster (`bash sbatch/test-cluster.sh start`) with 100 MB a
job; hydra-submitit-launcher (`--submitit PATH`: a folder holding it, put on PYTHONPATH for its run only) is timed
from the command's start until squeue lists its array (it then waits for results, which this run does not). Every
job either launcher submitted is cancelled right after, by its id.

    PYTHONPATH=. .venv/bin/python benchmarks/scale_app.py --baseline /tmp/main [--slurm] [--submitit /tmp/hsl-site]

benchmarks/scale.py calls `app_plans` and `app_submission`.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
APP = '''
import hydra


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg):
    return {"lr": cfg.lr, "seed": cfg.seed}


if __name__ == "__main__":
    main()
'''
CONFIG = '''
defaults:
  - _self_
  - override hydra/launcher: {launcher}
lr: 0
seed: 0
hydra:
  sweep:
    dir: multirun
'''
#: The two swept keys' sizes for each number of jobs.
SHAPES = {20: (4, 5), 1000: (40, 25), 10000: (100, 100)}
ACTIONS = {"status": ["hydra.launcher.action=status"], "dry run": ["hydra.launcher.action=dry_run"],
           "skip check": []}


#: The CPU seconds of each command `timed` ran, by its arguments (the last run's).
CPU_SECONDS: dict[tuple[str, ...], float] = {}


@dataclass
class Tree:
    """A molgen_grid source tree to time (this one, or a baseline checkout)."""

    name: str
    path: Path

    def env(self, extra: str | None = None) -> dict[str, str]:
        paths = [str(self.path)] + ([extra] if extra else [])
        return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "COLUMNS": "200"}


def write_app(folder: Path, launcher: str = "grid", name: str = "app") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(APP)
    (folder / "config.yaml").write_text(CONFIG.format(launcher=launcher))
    return folder


def sweep_args(jobs: int) -> list[str]:
    lrs, seeds = SHAPES[jobs]
    return [f"lr=range(0,{lrs})", f"seed=range(0,{seeds})"]


def timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """The whole command's wall time and its stdout; exits on failure. Its CPU time (user and system) is kept
    in CPU_SECONDS: on a shared core, the figure the machine's load does not inflate."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_SECONDS[tuple(args)] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds, done.stdout


def all_done(app: Path, jobs: int, tree: Tree) -> None:
    """Every job of the sweep done: one run for real, the rest's summaries written from its summary."""
    lrs, seeds = SHAPES[jobs]
    timed(["app.py", "-m", "lr=0", "seed=0"], tree.env(), app)
    first = json.loads((app / "multirun" / "lr=0,seed=0" / "summary.json").read_text())
    for lr in range(lrs):
        for seed in range(seeds):
            cell = f"lr={lr},seed={seed}"
            summary = {**first, "cell": cell, "overrides": [f"lr={lr}", f"seed={seed}"],
                       "config": {"lr": lr, "seed": seed}, "value": {"lr": lr, "seed": seed},
                       "fingerprint": {**first["fingerprint"], "config": {"lr": str(lr), "seed": str(seed)}}}
            (app / "multirun" / cell).mkdir(exist_ok=True)
            (app / "multirun" / cell / "summary.json").write_text(json.dumps(summary))


def check_output(action: str, out: str, jobs: int) -> None:
    """The command did what it is timed for: every job shown, or none run and every one done."""
    if action == "skip check":
        assert f"{jobs} jobs, 0 to run, {jobs} done" in out, out[-500:]
    else:
        assert len([line for line in out.splitlines() if line.startswith("#")]) == jobs, out[-500:]


def app_plans(work: Path, trees: list[Tree], sizes: list[int], baseline_jobs: int, repeat: int,
              emit: Callable[[str], None] = print) -> dict[tuple[str, int, str], tuple[float, float]]:
    """Status, dry run and skip check of the plain app's multirun at each size, for each tree (a tree after the
    first only up to `baseline_jobs`): the best wall and CPU seconds; one line per size and action, with the
    ratio of each tree's to the first's."""
    figures: dict[tuple[str, int, str], tuple[float, float]] = {}
    for jobs in sizes:
        for tree in trees:
            if tree is not trees[0] and jobs > baseline_jobs:
                continue
            app = write_app(work / f"{tree.name}-{jobs}")
            all_done(app, jobs, tree)
            for action, extra in ACTIONS.items():
                args = ["app.py", "-m", *sweep_args(jobs), *extra]
                runs = []
                for _ in range(repeat):
                    seconds, out = timed(args, tree.env(), app)
                    runs.append((seconds, CPU_SECONDS[tuple(args)]))
                check_output(action, out, jobs)
                figures[tree.name, jobs, action] = min(runs)
        for action in ACTIONS:
            wall, cpu = figures[trees[0].name, jobs, action]
            line = f"app jobs {jobs:>6,}  {action:<10}  {trees[0].name} {wall:6.2f} s wall {cpu:6.2f} s cpu"
            for tree in trees[1:]:
                if (tree.name, jobs, action) in figures:
                    base_wall, base_cpu = figures[tree.name, jobs, action]
                    line += (f"  |  {tree.name} {base_wall:7.2f} s wall {base_cpu:7.2f} s cpu  |  "
                             f"{base_wall / wall:.1f}x wall, {base_cpu / cpu:.1f}x cpu")
                else:
                    line += f"  |  {tree.name} not run (above --baseline-jobs {baseline_jobs})"
            emit(line)
    return figures


def queued_from(cwd: Path) -> set[str]:
    """The job ids squeue lists as submitted from this directory."""
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%Z"], capture_output=True, text=True, check=True).stdout
    return {line.split("|")[0] for line in out.splitlines() if line.split("|")[-1] == str(cwd)}


def cancel(ids: set[str]) -> None:
    """scancel of these jobs' arrays (each task's id is `array_index`), and nothing else."""
    arrays = {i.split("_")[0] for i in ids}
    if arrays:
        subprocess.run(["scancel", *sorted(arrays)], check=False)


def ours_submit(work: Path, tree: Tree, jobs: int) -> tuple[float, int]:
    """This launcher's submission of the app's jobs (submit and return), then every job it queued cancelled."""
    app = write_app(work / f"slurm-{tree.name}")
    try:
        seconds, _ = timed(["app.py", "-m", *sweep_args(jobs), "hydra.launcher.executor=slurm",
                            "hydra.launcher.mem_gb=0.1", "hydra.launcher.time_min=5"], tree.env(), app)
    finally:
        ids = queued_from(app)
        cancel(ids)
    return seconds, len(ids)


def submitit_submit(work: Path, tree: Tree, jobs: int, site: str, timeout: float = 900) -> tuple[float, int]:
    """hydra-submitit-launcher's submission of the same jobs: from the command's start until squeue lists
    them all (it then waits for their results; its process is stopped and its jobs cancelled)."""
    app = write_app(work / "slurm-submitit", "submitit_slurm", "app")
    args = [sys.executable, "app.py", "-m", *sweep_args(jobs), "hydra.launcher.mem_gb=null",
            "hydra.launcher.mem_per_cpu=100M", "hydra.launcher.timeout_min=5", "hydra.launcher.array_parallelism=256"]
    started = time.perf_counter()
    process = subprocess.Popen(args, env=tree.env(site), cwd=app, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    ids: set[str] = set()
    try:
        while len(ids) < jobs and process.poll() is None and time.perf_counter() - started < timeout:
            time.sleep(0.1)
            ids = queued_from(app)
        seconds = time.perf_counter() - started
    finally:
        cancel(queued_from(app) | ids)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait()
    if len(ids) < jobs:
        sys.exit(f"hydra-submitit-launcher queued {len(ids)} of {jobs} jobs:\n{process.stderr.read()[-2000:]}")
    return seconds, len(ids)


def app_submission(work: Path, tree: Tree, jobs: int, submitit_site: str | None,
                   emit: Callable[[str], None] = print) -> None:
    """The app's jobs submitted to the test cluster by this launcher, beside hydra-submitit-launcher's."""
    ours, queued = ours_submit(work, tree, jobs)
    line = f"app jobs {jobs:>6,}  submitted  {tree.name} {ours:7.2f} s ({queued} queued)"
    if submitit_site:
        theirs, _ = submitit_submit(work, tree, jobs, submitit_site)
        line += f"  |  hydra-submitit-launcher {theirs:7.2f} s  |  {theirs / ours:.1f}x"
    emit(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="a molgen_grid tree to time beside this one (e.g. main)")
    parser.add_argument("--baseline-jobs", type=int, default=1000, help="time the baseline up to this many jobs")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], choices=sorted(SHAPES))
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--slurm", action="store_true", help="submit 1,000 jobs to the test cluster")
    parser.add_argument("--slurm-only", action="store_true", help="only the submission")
    parser.add_argument("--submitit", help="a folder holding hydra-submitit-launcher, timed beside the submission")
    args = parser.parse_args()
    trees = [Tree("change", ROOT)] + ([Tree("baseline", args.baseline.resolve())] if args.baseline else [])
    with tempfile.TemporaryDirectory(prefix="scale-app-") as scratch:
        if not args.slurm_only:
            app_plans(Path(scratch), trees, args.sizes, args.baseline_jobs, args.repeat)
        if args.slurm or args.slurm_only:
            app_submission(Path(scratch), trees[0], 1000, args.submitit)


if __name__ == "__main__":
    main()
