"""benchmarks/scale_app.py at a tiny size (20 jobs, no Slurm), so that it cannot rot: each action's line is
printed and each command did what it is timed for (every job shown; a rerun that runs none)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from scale_app import ROOT, Tree, app_plans  # noqa: E402


def test_the_app_scale_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    lines: list[str] = []
    figures = app_plans(tmp_path, [Tree("change", ROOT)], [20], baseline_jobs=0, repeat=1, emit=lines.append)
    assert [line.split()[3] for line in lines] == ["status", "dry", "skip"]
    assert all(line.startswith("app jobs     20") for line in lines)
    assert set(figures) == {("change", 20, action) for action in ("status", "dry run", "skip check")}
    assert (tmp_path / "change-20" / "multirun" / "lr=3,seed=4" / "summary.json").exists()
