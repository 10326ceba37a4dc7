"""The engine at a lab's scale: status and dry-run of 10,752 cells, and Slurm submissions of 1,008 and 3,024.

Every figure is the wall time of the whole `sbatch/run.sh` command, as a user types it, with `ulimit -n 1024`
(a sweep must never hold a file per cell open), best of three for the plans:
- status --json and --dry-run over attention 7 x kv_cache 3 x template_building 2 x tokenizer_cache 2 x
  logit_processor 4 x gpu 4 x batch_size 1..8 = 10,752 cells, a third of them with a summary.json whose
  fingerprint does not match (so each is checked part by part: the real cost of a done cell);
- submitting 1,008 cells (gpu=h100,a100 x 7 attention x 3 kv_cache x 2 x 2 x 3 logit_processor x batch_size
  1,2) and 3,024 cells (gpu=h100,a100,rtx3070 x 7 x 3 x 2 x 2 x 4 x batch_size 1..3) to the local test
  cluster (`bash sbatch/test-cluster.sh start`), until sbatch took every array; the jobs are cancelled
  right after. Targets: status and dry-run under 3 s, 1,000 cells under 10 s, 3,024 under 20 s.

    .venv/bin/python benchmarks/scale.py [--skip-slurm]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from molgen_grid.grid.task import REQUIRED_KEYS

ROOT = Path(__file__).resolve().parent.parent
RUN = ["bash", str(ROOT / "sbatch" / "run.sh")]
AXES = ["attention=glob(*)", "kv_cache=glob(*)", "template_building=serial,parallel", "tokenizer_cache=none,cached"]
PLAN_GRID = AXES + ["logit_processor=glob(*)", "gpu=local,h100,a100,rtx3070", "batch_size=range(1,9)"]
SLURM_GRIDS = {
    1008: AXES + ["logit_processor=none,python,tensor", "gpu=h100,a100", "batch_size=1,2"],
    3024: AXES + ["logit_processor=glob(*)", "gpu=h100,a100,rtx3070", "batch_size=1,2,3"],
}


def command(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """The whole command's wall time (under ulimit -n 1024) and its stdout; exits on failure."""
    line = "ulimit -n 1024 && exec " + " ".join(f"'{a}'" for a in args)
    started = time.perf_counter()
    done = subprocess.run(["bash", "-c", line], env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stderr}")
    return seconds, done.stdout


def best_of_three(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    runs = [command(args, env, cwd) for _ in range(3)]
    return min(r[0] for r in runs), runs[-1][1]


def plans(work: Path, env: dict[str, str]) -> None:
    results = work / "results"
    front = [*RUN, f"grid.results_dir={results}"]
    _, out = command([*front, "--status", "--json", *PLAN_GRID], env, work)
    cells = json.loads(out)["cells"]
    for cell in cells[::3]:
        cell_dir = results / "default" / cell["cell"]
        cell_dir.mkdir(parents=True)
        summary = {key: None for key in REQUIRED_KEYS} | {"status": "ok", "fingerprint": {
            "config": {"config.yaml": "older"}, "code": {}, "inputs": {}, "libraries": {}}}
        (cell_dir / "summary.json").write_text(json.dumps(summary))
    status, out = best_of_three([*front, "--status", "--json", *PLAN_GRID], env, work)
    dry, _ = best_of_three([*front, "--dry-run", *PLAN_GRID], env, work)
    print(f"plan: {len(cells)} cells, states {json.loads(out)['counts']}")
    print(f"  status --json {status:.2f} s, dry-run {dry:.2f} s (target < 3 s each, whole command, best of 3)")


def submissions(work: Path, env: dict[str, str]) -> None:
    for size, grid in SLURM_GRIDS.items():
        results = work / f"results-{size}"
        seconds, out = command([*RUN, f"grid.results_dir={results}", "--limit", "1", *grid], env, work)
        arrays = [line.split()[2] for line in out.splitlines() if line.startswith("submitted array")]
        subprocess.run(["scancel", *arrays], check=False)
        submitted = sum(int(line.split(": ")[1].split()[0]) for line in out.splitlines()
                        if line.startswith("submitted array"))
        target = 10 if size < 2000 else 20
        print(f"submit: {submitted} of {size} Slurm cells in {seconds:.2f} s, {len(arrays)} sbatch calls "
              f"(target < {target} s, whole command)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-slurm", action="store_true", help="only the plans (no test cluster needed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ}
        plans(work, env)
        if not args.skip_slurm:
            submissions(work, env)


if __name__ == "__main__":
    main()
