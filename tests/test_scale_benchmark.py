"""benchmarks/scale.py runs, so that it cannot rot: a tiny size of the plans and the app sections, this checkout
timed beside itself, no Slurm (the submission's path is the submission tests')."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"\s+([\d.]+)"
#: `48 status --json`, then each checkout's wall and CPU seconds and "-" (no us/cell at the smallest size), then
#: the two ratios.
PLAN_ROW = re.compile(rf"^\s+48 (status --json|dry-run){NUMBER * 2}\s+-{NUMBER * 2}\s+-{NUMBER * 2}$")
#: `20 status`, then each checkout's wall and CPU seconds, then the two ratios.
APP_ROW = re.compile(rf"^\s+20 (status|dry run|skip check){NUMBER * 6}$")


def test_scale_benchmark_prints_the_plans_and_the_app_beside_their_baseline() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--sections", "plans,app",
                           "--skip-slurm", "--sizes", "48", "--app-sizes", "20", "--runs", "1", "--baseline", "."],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    plans = [m.groups() for m in map(PLAN_ROW.match, lines) if m]
    app = [m.groups() for m in map(APP_ROW.match, lines) if m]
    assert [row[0] for row in plans] == ["status --json", "dry-run"], lines
    assert [row[0] for row in app] == ["status", "dry run", "skip check"], lines
    assert all(float(seconds) > 0 for row in plans + app for seconds in row[1:]), lines
    assert not [line for line in lines if "differ" in line or "submit" in line], lines
