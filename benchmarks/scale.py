"""The engine at a lab's scale: status and dry-run from 1,008 to 100,800 cells, today's main beside the change, and
Slurm submissions of 1,008 and 3,024 cells.

Every figure times the whole `sbatch/run.sh` command, as a user types it, with `ulimit -n 1024` (a sweep must
never hold a file per cell open): its wall seconds and, for the plans, its CPU seconds (what a machine shared with
other work changes least), each the best of `--runs`, the two checkouts taking turns run by run:
- plans: `--status --json` and `--dry-run` over attention 7 x kv_cache 3 x template_building 2 x tokenizer_cache 2
  x logit_processor 4 x gpu 4 x batch_size 1..N (10,752 cells at N = 8), a third of the cells with a summary.json
  whose fingerprint does not match (so each is checked part by part: the real cost of a done cell). Each size is
  timed with this checkout (the change) and, right beside it on the same tree, a `git worktree` of `--baseline`
  (today's main), whose outputs must be byte-identical; printed per size: seconds, microseconds per cell beyond
  the smallest size (flat when the cost is linear), and change / baseline;
- submitting 1,008 cells (gpu=h100,a100 x 7 attention x 3 kv_cache x 2 x 2 x 3 logit_processor x batch_size
  1,2) and 3,024 cells (gpu=h100,a100,rtx3070 x 7 x 3 x 2 x 2 x 4 x batch_size 1..3) to the local test
  cluster (`bash sbatch/test-cluster.sh start`), until sbatch took every array; the jobs are cancelled
  right after. Targets: 1,000 cells under 10 s, 3,024 under 20 s.

    .venv/bin/python benchmarks/scale.py [--sizes 1008,10752,49728,100800] [--baseline REV|.|none] [--runs 5]
                                         [--skip-slurm]
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
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
#: The commit before issue 31's work: today's main, as the baseline of the plans.
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
SLURM_GRIDS = {
    1008: AXES + ["logit_processor=none,python,tensor", "gpu=h100,a100", "batch_size=1,2"],
    3024: AXES + ["logit_processor=glob(*)", "gpu=h100,a100,rtx3070", "batch_size=1,2,3"],
}
PLAN_ACTIONS = {"status --json": ["--status", "--json"], "dry-run": ["--dry-run"]}


@dataclass
class Checkout:
    """A tree of the tool whose front door is timed."""

    label: str
    root: Path

    def env(self) -> dict[str, str]:
        """This checkout's code wins (sbatch/run.sh puts it first on PYTHONPATH), run by this Python, its bytecode
        cached as a user's is (PYTHONDONTWRITEBYTECODE would compile every module on every run)."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        return {**env, "MOLGEN_PYTHON": sys.executable}

    def front(self, results: Path) -> list[str]:
        return ["bash", str(self.root / "sbatch" / "run.sh"), f"grid.results_dir={results}"]


def plan_grid(size: int) -> list[str]:
    """The overrides of the plans' grid of `size` cells."""
    if size in PLAN_GRIDS:
        return PLAN_GRIDS[size]
    if size % PER_BATCH:
        sys.exit(f"--sizes {size}: choose one of {', '.join(map(str, PLAN_GRIDS))} or a multiple of {PER_BATCH}")
    return AXES + ["logit_processor=glob(*)", "gpu=local,h100,a100,rtx3070",
                   f"batch_size=range(1,{size // PER_BATCH + 1})"]


@dataclass(frozen=True)
class Timing:
    """A whole command's wall seconds and CPU seconds (its processes' user and system time: what a machine
    shared with other work changes least)."""

    wall: float
    cpu: float


def command(args: list[str], env: dict[str, str], cwd: Path) -> tuple[Timing, str]:
    """The whole command's timing (under ulimit -n 1024) and its stdout; exits on failure."""
    line = "ulimit -n 1024 && exec " + " ".join(f"'{a}'" for a in args)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(["bash", "-c", line], env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Timing(seconds, cpu), done.stdout


@contextlib.contextmanager
def checkouts(baseline: str, work: Path) -> Iterator[list[Checkout]]:
    """The baseline (a detached `git worktree` of `baseline`; `.`: this checkout again; `none`: no baseline)
    and this checkout, the change; the worktree is removed afterwards."""
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
    _, out = command([*change.front(results), "--status", "--json", *grid], change.env(), work)
    made = half_done(results, out)
    if made["cells"] != size:
        sys.exit(f"the grid of {size} has {made['cells']} cells")
    best: dict[tuple[str, str], Timing] = {}
    for action, flags in PLAN_ACTIONS.items():
        outputs = {}
        for _ in range(runs):
            for tree in trees:
                timing, outputs[tree.label] = command([*tree.front(results), *flags, *grid], tree.env(), work)
                known = best.get((tree.label, action), timing)
                best[tree.label, action] = Timing(min(known.wall, timing.wall), min(known.cpu, timing.cpu))
        if len(set(outputs.values())) > 1:
            print(f"  {size} cells, {action}: the outputs differ between {' and '.join(outputs)}")
    return best


def plans(sizes: list[int], trees: list[Checkout], work: Path, runs: int) -> None:
    """One line per size and action: each checkout's seconds and microseconds per cell, and the ratios."""
    print(f"plans: whole command, best of {runs}, a third of the cells done with a stale fingerprint; us/cell: "
          f"the time beyond the {sizes[0]:,}-cell grid's per cell beyond it, wall/cpu")
    ratio = len(trees) > 1
    print(f"  {'':>8} {'':<14}" + "".join(f"{t.label:<29}" for t in trees) + ("change/baseline" if ratio else ""))
    print(f"  {'cells':>8} {'action':<14}" + f"{'wall s':>7} {'cpu s':>7} {'us/cell':>11}  " * len(trees)
          + (f"{'wall':>6} {'cpu':>6}" if ratio else ""))
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


def submissions(work: Path) -> None:
    """Submit each Slurm grid with `--limit 1` (test mode) to the test cluster; cancel its jobs at once."""
    change = Checkout("change", ROOT)
    for size, grid in SLURM_GRIDS.items():
        timing, out = command([*change.front(work / f"results-{size}"), "--limit", "1", *grid], change.env(), work)
        lines = [line for line in out.splitlines() if line.startswith("submitted array")]
        subprocess.run(["scancel", *(line.split()[2] for line in lines)], check=False)
        submitted = sum(int(line.split(": ")[1].split()[0]) for line in lines)
        target = 10 if size < 2000 else 20
        print(f"submit: {submitted} of {size} Slurm cells in {timing.wall:.2f} s, {len(lines)} sbatch calls "
              f"(target < {target} s, whole command)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=f"1008,{8 * PER_BATCH},{37 * PER_BATCH},{75 * PER_BATCH}",
                        help="the plans' grid sizes, comma-separated, smallest first (48, 1008, or multiples of "
                             f"{PER_BATCH}; default: %(default)s)")
    parser.add_argument("--baseline", default=BASELINE,
                        help="the revision timed beside this checkout (default: %(default)s, today's main); "
                             "`.`: this checkout again; `none`: no baseline")
    parser.add_argument("--runs", type=int, default=5, help="best of how many runs (default: %(default)s)")
    parser.add_argument("--skip-slurm", action="store_true", help="only the plans (no test cluster needed)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with checkouts(args.baseline, work) as trees:
            plans(sizes, trees, work, args.runs)
        if not args.skip_slurm:
            submissions(work)


if __name__ == "__main__":
    main()
