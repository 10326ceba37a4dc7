"""benchmarks/scale.py runs: a tiny grid, this checkout timed beside itself, no Slurm (so it cannot rot)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"\s+([\d.]+)"
#: `48 status --json`, then each checkout's wall and CPU seconds and "-" (no us/cell at the smallest size), then
#: the two ratios.
ROW = re.compile(rf"^\s+48 (status --json|dry-run){NUMBER * 2}\s+-{NUMBER * 2}\s+-{NUMBER * 2}$")


def test_scale_benchmark_prints_each_action_beside_its_baseline() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--sizes", "48", "--runs", "1",
                           "--baseline", ".", "--skip-slurm"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rows = [m.groups() for m in map(ROW.match, lines) if m]
    assert [row[0] for row in rows] == ["status --json", "dry-run"], lines
    assert all(float(seconds) > 0 for row in rows for seconds in row[1:]), lines
    assert not [line for line in lines if "differ" in line], lines
