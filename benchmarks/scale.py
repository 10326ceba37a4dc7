"""The engine at a lab's scale, today's main beside the change in one run: plans from 1,008 to 100,800 cells, a
Hydra app's 1,000 and 10,000 jobs, and 10,080 Slurm cells submitted.

Every figure times a whole command, as a user types it, with `ulimit -n 1024` (a sweep must never hold a file per
cell open): its wall seconds and its CPU seconds (what a machine shared with other work changes least), each the
best of `--runs`, the checkouts taking turns run by run. The baseline is a detached `git worktree` of `--baseline`
(today's main, 1603bf0), made once for every section and removed at the end. Sections (`--sections`):
- plans: `--status --json` and `--dry-run` over attention 7 x kv_cache 3 x template_building 2 x tokenizer_cache 2
  x logit_processor 4 x gpu 4 x batch_size 1..N (10,752 cells at N = 8), a third of the cells with a summary.json
  whose fingerprint does not match (so each is checked part by part: the real cost of a done cell), both checkouts
  on the same tree, their outputs byte-identical; printed per size: seconds, microseconds per cell beyond the
  smallest size (flat when the cost is linear), and change / baseline;
- app (benchmarks/scale_app.py): status, dry run and the skip check of a plain Hydra app's multirun (`--app-sizes`
  jobs; the baseline, which composes every job, up to `--app-baseline-jobs`), then (Slurm) its `--app-submit-jobs`
  jobs submitted beside hydra-submitit-launcher (`--submitit PATH`, a folder holding it);
- submit (benchmarks/scale_submit.py, Slurm): the `--submit-cells` grid submitted with `--limit 1` by each
  checkout, its sbatch calls counted. Target: 10,080 cells under 10 s, one sbatch per array.
The Slurm parts need the local test cluster (`bash sbatch/test-cluster.sh start`); every job they submit is
cancelled right after, by its id. `--skip-slurm` leaves them out.

    .venv/bin/python benchmarks/scale.py [--sections plans,app,submit] [--skip-slurm] [--baseline REV|.|none]
        [--runs 5] [--sizes 1008,10752,49728,100800] [--app-sizes 1000,10000] [--app-baseline-jobs 1000]
        [--app-submit-jobs 1000] [--submitit PATH] [--submit-cells 10k|1k]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import scale_app
import scale_submit
from turns import best_by_turns

ROOT = Path(__file__).resolve().parent.parent
#: The commit before issue 31's work: today's main, the baseline of every section.
BASELINE = "1603bf0"
ATTENTION = "attention=eager,flash_attention_2,sdpa,sdpa_cudnn,sdpa_efficient,sdpa_flash,sdpa_math"
AXES = [ATTENTION, "kv_cache=glob(*)", "template_building=serial,parallel", "tokenizer_cache=none,cached"]
#: Cells of the plans' grid per batch_size value.
PER_BATCH = 7 * 3 * 2 * 2 * 4 * 4
#: The plans' grids by size; any multiple of PER_BATCH is a size too (`plan_grid`).
PLAN_GRIDS = {
    48: ["attention=eager,sdpa", "kv_cache=glob(*)", "template_building=serial,parallel", "batch_size=1,2,3,4"],
    1008: AXES + ["logit_processor=none,python,tensor", "gpu=h100,a100", "batch_size=1,2"],
}
#: The Slurm grids submitted: 10,080 cells (3,360 a partition) and a small one for quick runs.
SUBMIT_GRIDS = {
    "10k": AXES + ["logit_processor=glob(*)", "gpu=h100,a100,rtx3070", "batch_size=range(1,11)"],
    "1k": PLAN_GRIDS[1008],
}
PLAN_ACTIONS = {"status --json": ["--status", "--json"], "dry-run": ["--dry-run"]}
SECTIONS = ("plans", "app", "submit")


@dataclass(frozen=True)
class Timing:
    """A whole command's wall seconds and CPU seconds (its processes' user and system time: what a machine
    shared with other work changes least)."""

    wall: float
    cpu: float

    def best(self, other: Timing | None) -> Timing:
        return self if other is None else Timing(min(self.wall, other.wall), min(self.cpu, other.cpu))


@dataclass
class Checkout:
    """A tree of the tool whose commands are timed; every section runs its commands through `run`."""

    label: str
    root: Path

    def env(self, paths: Sequence[str] = (), bin_dir: Path | None = None) -> dict[str, str]:
        """This checkout's code first on PYTHONPATH (then `paths`, e.g. a plugin's folder), run by this Python
        (sbatch/run.sh installs nothing then), its bytecode cached as a user's is (PYTHONDONTWRITEBYTECODE would
        compile every module on every run); `bin_dir` first on PATH (a command's wrapper)."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(MOLGEN_PYTHON=sys.executable, PYTHONPATH=os.pathsep.join([str(self.root), *paths]))
        if bin_dir is not None:
            env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
        return env

    def front(self, results: Path) -> list[str]:
        return ["bash", str(self.root / "sbatch" / "run.sh"), f"grid.results_dir={results}"]

    def run(self, args: list[str], cwd: Path, env: dict[str, str] | None = None,
            check: bool = True) -> tuple[Timing, subprocess.CompletedProcess[str]]:
        """The whole command's timing (under ulimit -n 1024) and its outcome; with `check`, exits on failure
        (without it, the caller cleans up first: cancels what was submitted)."""
        line = "ulimit -n 1024 && exec " + " ".join(f"'{a}'" for a in args)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(["bash", "-c", line], env=env or self.env(), cwd=cwd, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if check and done.returncode != 0:
            sys.exit(f"{self.label}: {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        return Timing(seconds, cpu), done


@contextlib.contextmanager
def checkouts(baseline: str, work: Path) -> Iterator[list[Checkout]]:
    """The baseline (a detached `git worktree` of `baseline`; `.`: this checkout again; `none`: no baseline)
    and this checkout, the change, last; the worktree is removed afterwards."""
    change = Checkout("change", ROOT)
    if baseline == "none":
        yield [change]
        return
    if baseline == ".":
        yield [Checkout("baseline", ROOT), change]
        return
    tree = work / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree), baseline], check=True)
    try:
        yield [Checkout(f"baseline {baseline}", tree), change]
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


def plan_grid(size: int) -> list[str]:
    """The overrides of the plans' grid of `size` cells."""
    if size in PLAN_GRIDS:
        return PLAN_GRIDS[size]
    return AXES + ["logit_processor=glob(*)", "gpu=local,h100,a100,rtx3070",
                   f"batch_size=range(1,{size // PER_BATCH + 1})"]


def half_done(results: Path, out: str) -> dict[str, int]:
    """A summary.json whose fingerprint does not match in every third cell of a status's cells; the counts."""
    from molgen_grid.grid.task import REQUIRED_KEYS

    cells = json.loads(out)["cells"]
    summary = {key: None for key in REQUIRED_KEYS} | {"status": "ok", "fingerprint": {
        "config": {"config.yaml": "older"}, "code": {}, "inputs": {}, "libraries": {}}}
    for cell in cells[::3]:
        cell_dir = results / "default" / cell["cell"]
        cell_dir.mkdir(parents=True)
        (cell_dir / "summary.json").write_text(json.dumps(summary))
    return {"cells": len(cells), "done": len(cells[::3])}


def plan_size(size: int, trees: list[Checkout], work: Path, runs: int) -> dict[tuple[str, str], Timing]:
    """The best timing of each action by each checkout over one tree of `size` cells, the checkouts taking turns
    run by run (so a burst of other work slows both alike); outputs compared."""
    results = work / f"plan-{size}"
    grid = plan_grid(size)
    change = trees[-1]
    _, done = change.run([*change.front(results), "--status", "--json", *grid], work)
    made = half_done(results, done.stdout)
    if made["cells"] != size:
        sys.exit(f"the grid of {size} has {made['cells']} cells")
    outputs: dict[str, dict[str, str]] = {action: {} for action in PLAN_ACTIONS}

    def timed(tree: Checkout, action: str) -> Timing:
        timing, done = tree.run([*tree.front(results), *PLAN_ACTIONS[action], *grid], work)
        outputs[action][tree.label] = done.stdout
        return timing

    best = best_by_turns(trees, PLAN_ACTIONS, runs, timed)
    for action, printed in outputs.items():
        if len(set(printed.values())) > 1:
            print(f"  {size} cells, {action}: the outputs differ between {' and '.join(printed)}")
    return best


def table_header(trees: list[Checkout], count: str, action_width: int, columns: str) -> list[str]:
    """A section's two header lines: each checkout's label over its `columns`, then change / baseline where a
    baseline runs beside the change; `count` heads the first column (cells, jobs)."""
    ratio = len(trees) > 1
    width = len(columns)
    return [f"  {'':>8} {'':<{action_width}}" + "".join(f"{t.label:<{width}}" for t in trees)
            + ("change/baseline" if ratio else ""),
            f"  {count:>8} {'action':<{action_width}}" + columns * len(trees)
            + (f"{'wall':>6} {'cpu':>6}" if ratio else "")]


def plans(sizes: list[int], trees: list[Checkout], work: Path, runs: int) -> None:
    """One line per size and action: each checkout's seconds and microseconds per cell, and the ratios."""
    print(f"plans: whole command, best of {runs}, a third of the cells done with a stale fingerprint; us/cell: "
          f"the time beyond the {sizes[0]:,}-cell grid's per cell beyond it, wall/cpu")
    ratio = len(trees) > 1
    for line in table_header(trees, "cells", 14, f"{'wall s':>7} {'cpu s':>7} {'us/cell':>11}  "):
        print(line)
    first: dict[tuple[str, str], Timing] = {}
    for size in sizes:
        best = plan_size(size, trees, work, runs)
        for action in PLAN_ACTIONS:
            cols = ""
            for tree in trees:
                t = best[tree.label, action]
                per = "-" if size == sizes[0] else "/".join(
                    f"{(now - then) / (size - sizes[0]) * 1e6:.0f}"
                    for now, then in ((t.wall, first[tree.label, action].wall), (t.cpu, first[tree.label, action].cpu)))
                cols += f"{t.wall:>7.3f} {t.cpu:>7.3f} {per:>11}  "
            if ratio:
                new, old = best[trees[-1].label, action], best[trees[0].label, action]
                cols += f"{new.wall / old.wall:>6.2f} {new.cpu / old.cpu:>6.2f}"
            print(f"  {size:>8,} {action:<14}{cols}", flush=True)
        if size == sizes[0]:
            first = best


def numbers(parser: argparse.ArgumentParser, text: str, flag: str) -> list[int]:
    """A comma-separated list of sizes, or one line saying which flag is wrong (exit status 2)."""
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        parser.error(f"{flag} {text}: give whole numbers separated by commas, e.g. {flag} 1000,10000")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="which sections run, comma-separated (default: %(default)s)")
    parser.add_argument("--skip-slurm", action="store_true",
                        help="leave out what needs the test cluster (the app's submission and the submit section)")
    parser.add_argument("--baseline", default=BASELINE,
                        help="the revision timed beside this checkout (default: %(default)s, today's main); "
                             "`.`: this checkout again; `none`: no baseline")
    parser.add_argument("--runs", type=int, default=5, help="best of how many runs (default: %(default)s)")
    parser.add_argument("--sizes", default=f"1008,{8 * PER_BATCH},{37 * PER_BATCH},{75 * PER_BATCH}",
                        help="plans: the grid sizes, comma-separated, smallest first (48, 1008, or multiples of "
                             f"{PER_BATCH}; default: %(default)s)")
    parser.add_argument("--app-sizes", default="1000,10000",
                        help=f"app: the multirun's jobs, comma-separated ({', '.join(map(str, scale_app.SHAPES))}; "
                             "default: %(default)s)")
    parser.add_argument("--app-baseline-jobs", type=int, default=1000,
                        help="app: time the baseline up to this many jobs (default: %(default)s)")
    parser.add_argument("--app-submit-jobs", type=int, default=1000, choices=sorted(scale_app.SHAPES),
                        help="app: the jobs submitted to the test cluster (default: %(default)s)")
    parser.add_argument("--submitit", metavar="PATH",
                        help="app: a folder holding hydra-submitit-launcher, timed beside the submission")
    parser.add_argument("--submit-cells", default="10k", choices=sorted(SUBMIT_GRIDS),
                        help="submit: the Slurm grid (default: %(default)s; 1k for a quick run)")
    args = parser.parse_args(argv)
    args.sections = args.sections.split(",")
    if unknown := sorted(set(args.sections) - set(SECTIONS)):
        parser.error(f"--sections {','.join(unknown)}: choose among {','.join(SECTIONS)}")
    args.sizes = numbers(parser, args.sizes, "--sizes")
    if odd := [size for size in args.sizes if size not in PLAN_GRIDS and size % PER_BATCH]:
        parser.error(f"--sizes {odd[0]}: choose one of {', '.join(map(str, PLAN_GRIDS))} or a multiple of {PER_BATCH}")
    args.app_sizes = numbers(parser, args.app_sizes, "--app-sizes")
    if unknown := sorted(set(args.app_sizes) - set(scale_app.SHAPES)):
        parser.error(f"--app-sizes {unknown[0]}: choose among {', '.join(map(str, scale_app.SHAPES))}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    slurm = not args.skip_slurm
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        work = Path(tmp)
        with checkouts(args.baseline, work) as trees:
            if "plans" in args.sections:
                plans(args.sizes, trees, work, args.runs)
            if "app" in args.sections:
                scale_app.app_plans(work / "app", trees, args.app_sizes, args.app_baseline_jobs, args.runs,
                                    table_header)
                if slurm:
                    scale_app.app_submission(work / "app", trees[-1], args.app_submit_jobs, args.submitit)
            if "submit" in args.sections and slurm:
                scale_submit.submissions(trees, SUBMIT_GRIDS[args.submit_cells], work / "submit")


if __name__ == "__main__":
    main()
