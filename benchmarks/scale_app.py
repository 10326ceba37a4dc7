"""A Hydra app's multirun at a lab's scale, a section of benchmarks/scale.py (its entry point): status, dry run
and the skip check of a plain app's 1,000 and 10,000 jobs, and its jobs submitted to the test cluster beside
hydra-submitit-launcher.

The app is a plain one (`@hydra.main`, Hydra's basic sweeper, `override hydra/launcher: grid`) with two swept keys,
`lr` x `seed`. Every figure is the whole command (`python app.py -m ...`) run by scale.py's `Checkout.run`, the
checkouts taking turns run by run. The skip check is a plain rerun of a multirun whose jobs are all done (their
summaries written from one real job's, each with its own config and value): it plans, finds nothing to run and
returns every job's stored value to the sweeper. The baseline composes every job (about 85 ms each), so it runs
only up to `baseline_jobs`; above it the line says so.

The submission goes to the local test cluster with 100 MB a job; hydra-submitit-launcher (a folder holding it, put
on PYTHONPATH for its run only) is timed from the command's start until squeue lists its jobs (it then waits for
results, which this run does not). Every job either launcher submitted is cancelled right after, by its id.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from turns import best_by_turns

if TYPE_CHECKING:
    from scale import Checkout, Timing

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
#: A job's line in a dry run or a status: its number and name (`#12 lr=2,seed=2`).
JOB_LINE = re.compile(r"(?:^|\s)#\d+ \S", re.MULTILINE)


def write_app(folder: Path, launcher: str = "grid") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(APP)
    (folder / "config.yaml").write_text(CONFIG.format(launcher=launcher))
    return folder


def app_command(jobs: int, *extra: str) -> list[str]:
    lrs, seeds = SHAPES[jobs]
    return [sys.executable, "app.py", "-m", f"lr=range(0,{lrs})", f"seed=range(0,{seeds})", *extra]


def app_env(tree: Checkout, paths: tuple[str, ...] = ()) -> dict[str, str]:
    """The tree's env, wide enough that rich never wraps a job's line."""
    return {**tree.env(paths), "COLUMNS": "200"}


def all_done(app: Path, jobs: int, tree: Checkout) -> None:
    """Every job of the sweep done: one run for real, the rest's summaries written from its summary. That run
    (not timed) takes a device lock of its own: the machine's CPU lock may be held by other work for minutes."""
    lrs, seeds = SHAPES[jobs]
    env = {**app_env(tree), "MOLGEN_GRID_DEVICE_LOCKS": str(app / "device-locks")}
    tree.run([sys.executable, "app.py", "-m", "lr=0", "seed=0"], app, env)
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
    """The command did what it is timed for: every job shown (a status may summarise them: `N jobs`), or none
    run and every one done."""
    if action == "skip check":
        assert f"{jobs} jobs, 0 to run, {jobs} done" in out, out[-500:]
    else:
        shown = len(JOB_LINE.findall(out))
        assert shown == jobs or (action == "status" and f": {jobs} jobs" in out), out[-500:]


def app_size(work: Path, trees: list[Checkout], jobs: int, runs: int) -> dict[tuple[str, str], Timing]:
    """The best timing of each action by each tree over its own done multirun of `jobs`, the trees taking turns
    run by run."""
    apps = {tree.label: write_app(work / f"{tree.label.replace(' ', '-')}-{jobs}") for tree in trees}
    for tree in trees:
        all_done(apps[tree.label], jobs, tree)

    def timed(tree: Checkout, action: str) -> Timing:
        timing, done = tree.run(app_command(jobs, *ACTIONS[action]), apps[tree.label], app_env(tree))
        check_output(action, done.stdout, jobs)
        return timing

    return best_by_turns(trees, ACTIONS, runs, timed)


def app_plans(work: Path, trees: list[Checkout], sizes: list[int], baseline_jobs: int, runs: int,
              header: Callable[[list[Checkout], str, int, str], list[str]],
              emit: Callable[[str], None] = print) -> dict[tuple[str, int, str], Timing]:
    """Status, dry run and skip check of the plain app's multirun at each size by each tree (the change, last,
    at every size; the others up to `baseline_jobs`): one line per size and action, change / baseline beside
    (`header`: scale.py's table header); the best timings by tree, jobs and action."""
    emit(f"app: a plain Hydra app's multirun (lr x seed), whole command, best of {runs}; the baseline composes "
         f"every job, so it runs up to {baseline_jobs:,} jobs")
    for line in header(trees, "jobs", 12, f"{'wall s':>8} {'cpu s':>8}    "):
        emit(line)
    figures: dict[tuple[str, int, str], Timing] = {}
    for jobs in sizes:
        timed = [tree for tree in trees if tree is trees[-1] or jobs <= baseline_jobs]
        best = app_size(work, timed, jobs, runs)
        for action in ACTIONS:
            cols = "".join(f"{best[t.label, action].wall:>8.2f} {best[t.label, action].cpu:>8.2f}    "
                           if t in timed else f"{'not run':>17}    " for t in trees)
            if len(timed) > 1:
                new, old = best[trees[-1].label, action], best[trees[0].label, action]
                cols += f"{new.wall / old.wall:>6.3f} {new.cpu / old.cpu:>6.3f}"
            emit(f"  {jobs:>8,} {action:<12}{cols}")
        figures |= {(label, jobs, action): timing for (label, action), timing in best.items()}
    return figures


def queued_from(cwd: Path) -> set[str]:
    """The job ids squeue lists as submitted from this directory."""
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%Z"], capture_output=True, text=True, check=True).stdout
    return {line.split("|")[0] for line in out.splitlines() if line.split("|")[-1] == str(cwd)}


def cancel(ids: set[str]) -> None:
    """scancel of these jobs' arrays (each task's id is `array_index`), and nothing else."""
    if arrays := {i.split("_")[0] for i in ids}:
        subprocess.run(["scancel", *sorted(arrays)], check=False)


def ours_submit(work: Path, tree: Checkout, jobs: int) -> tuple[float, int]:
    """This launcher's submission of the app's jobs (submit and return), then every job it queued cancelled."""
    app = write_app(work / "slurm-grid")
    try:
        timing, _ = tree.run(app_command(jobs, "hydra.launcher.executor=slurm", "hydra.launcher.mem_gb=0.1",
                                         "hydra.launcher.time_min=5"), app, app_env(tree))
    finally:
        ids = queued_from(app)
        cancel(ids)
    return timing.wall, len(ids)


def submitit_submit(work: Path, tree: Checkout, jobs: int, site: str, timeout: float = 900) -> tuple[float, int]:
    """hydra-submitit-launcher's submission of the same jobs: from the command's start until squeue lists
    them all (it then waits for their results; its process is stopped and its jobs cancelled)."""
    app = write_app(work / "slurm-submitit", "submitit_slurm")
    args = app_command(jobs, "hydra.launcher.mem_gb=null", "hydra.launcher.mem_per_cpu=100M",
                       "hydra.launcher.timeout_min=5", "hydra.launcher.array_parallelism=256")
    started = time.perf_counter()
    process = subprocess.Popen(args, env=app_env(tree, (site,)), cwd=app, stdout=subprocess.DEVNULL,
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


def app_submission(work: Path, tree: Checkout, jobs: int, submitit_site: str | None,
                   emit: Callable[[str], None] = print) -> None:
    """The app's jobs submitted to the test cluster by this launcher, beside hydra-submitit-launcher's."""
    ours, queued = ours_submit(work, tree, jobs)
    line = f"app submit: {jobs:,} jobs, {tree.label} {ours:.2f} s whole command ({queued} queued)"
    if submitit_site:
        theirs, _ = submitit_submit(work, tree, jobs, submitit_site)
        line += f"  |  hydra-submitit-launcher {theirs:.2f} s until squeue lists them  |  {theirs / ours:.1f}x"
    else:
        line += "  |  hydra-submitit-launcher not run (give --submitit PATH, a folder holding it)"
    emit(line)
