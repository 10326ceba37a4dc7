"""How fast `--status --json` and `--dry-run` answer over a 3,024-cell grid (the whole command, timed).

The grid: attention 7 options x kv_cache 3 x template_building 2 x tokenizer_cache 2 x logit_processor 3 x
gpu 4 x batch_size=1,2,4. Options the project does not have yet are created in a temporary copy of conf/
(MOLGEN_GRID_CONF points the tool at it), and a third of the cells get a summary.json, so that status reads
real files. Prints the wall time of each command, best of three runs; the target is under 3 s.

    .venv/bin/python benchmarks/plan_speed.py
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from molgen_grid.grid.state import SUMMARY_KEYS

ROOT = Path(__file__).resolve().parent.parent
EXTRA_OPTIONS = {
    "attention": ["eager", "sdpa", "sdpa_flash", "sdpa_efficient", "sdpa_cudnn", "sdpa_math", "flash_attention_2"],
    "kv_cache": ["dynamic", "static", "static_compiled"],
    "logit_processor": ["none", "python", "tensor"],
}
GRID = ["attention=glob(*)", "kv_cache=glob(*)", "template_building=serial,parallel",
        "tokenizer_cache=none,cached", "logit_processor=glob(*)", "gpu=local,h100,a100,rtx3070",
        "batch_size=1,2,4"]


def make_conf(workdir: Path) -> Path:
    conf = workdir / "conf"
    shutil.copytree(ROOT / "conf", conf)
    for group, options in EXTRA_OPTIONS.items():
        for option in options:
            path = conf / group / f"{option}.yaml"
            if not path.exists():
                path.write_text(f"# made by benchmarks/plan_speed.py\nimplementation: {option}\n")
    return conf


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
        best = min(best, time.perf_counter() - start)
        if done.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
        out = done.stdout
    return best, out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "MOLGEN_GRID_CONF": str(make_conf(work))}
        front = [str(ROOT / "sbatch" / "run.sh"), f"grid.results_dir={work / 'results'}"]
        seconds, out = timed(["bash", *front, "--status", "--json", *GRID], env, work)
        cells = json.loads(out)["cells"]
        for cell in cells[::3]:
            cell_dir = work / "results" / "default" / cell["cell"]
            cell_dir.mkdir(parents=True)
            summary = {key: None for key in SUMMARY_KEYS} | {"status": "ok", "spec_hash": "an older spec"}
            (cell_dir / "summary.json").write_text(json.dumps(summary))
        seconds, out = timed(["bash", *front, "--status", "--json", *GRID], env, work)
        counts = json.loads(out)["counts"]
        dry, _ = timed(["bash", *front, "--dry-run", *GRID], env, work)
        print(f"cells: {len(cells)}  states: {counts}")
        print(f"status --json: {seconds:.2f} s   dry-run: {dry:.2f} s   (target < 3 s, whole command, best of 3)")


if __name__ == "__main__":
    main()
