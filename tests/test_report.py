"""From a finished grid to an answer: report.csv/.md, plots, comparisons, the artifacts map, named studies."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml

from conftest import FAST, ROOT, Tool

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def declared_cells(name: str) -> int:
    params = yaml.safe_load((ROOT / "conf" / "experiment" / f"{name}.yaml").read_text())["hydra"]["sweeper"]["params"]
    return math.prod(len(str(v).split(",")) for v in params.values())


@pytest.mark.slow
def test_report_of_a_finished_grid(tool: Tool) -> None:
    grid = [*FAST, "attention=eager,sdpa"]
    tool.cli(*grid)
    done = tool.cli("--report", *grid, "--compare", "kv_cache=static:dynamic")
    assert "4 cells reported" in done.stdout and "2 matched pairs" in done.stdout
    out = tool.cwd / "artifacts" / "default"
    frame = pd.read_csv(out / "report.csv")
    assert len(frame) == 4 and set(frame["state"]) == {"done"}
    assert {"attention", "kv_cache", "logit_processor", "tokens_per_s", "tokens_per_s_min", "tokens_per_s_max",
            "speedup"} <= set(frame.columns)
    assert (frame["tokens_per_s"] > 0).all()
    text = (out / "report.md").read_text()
    assert "**Best cell:**" in text and "x the baseline" in text and "1.00x (1 repeat)" in text
    assert "## kv_cache=static:dynamic" in text and "Median change over pairs" in text
    assert (out / "throughput.png").stat().st_size > 1000 and (out / "heatmap.png").stat().st_size > 1000
    copies = list(out.glob("*/summary.json"))
    assert len(copies) == 4 and all(json.loads(c.read_text())["status"] == "ok" for c in copies)
    index = (tool.cwd / "artifacts" / "README.md").read_text()
    for name in EXPERIMENTS:
        assert f"| {name} |" in index
    assert "[report](default/report.md)" in index


def test_report_of_an_empty_grid_and_a_bad_comparison(tool: Tool) -> None:
    done = tool.cli("--report", *FAST)
    assert "0 cells reported (2 missing not yet)" in done.stdout
    assert (tool.cwd / "artifacts" / "default" / "report.md").exists()
    bad = tool.cli("--report", *FAST, "--compare", "kv_cache", check=False)
    assert bad.returncode == 2 and "write AXIS=A:B" in bad.stderr


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_each_named_experiment_shows_its_declared_grid(tool: Tool, name: str) -> None:
    cells = declared_cells(name)
    plan = tool.cli("--experiment", name, "--dry-run")
    assert f"experiment {name}: {cells} of {cells} cells would run" in plan.stdout
