"""What scripts and people rely on: the `--status --json` fields, the cost of asking (no torch, one sacct call
for the whole grid), another config tree through MOLGEN_GRID_CONF, a cell's warnings where they are read, and
the two front doors a user types (`bash sbatch/run.sh`, the `molgen-grid` console script)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import FAST, LIGHT, ROOT, Light, Tool, attempts
from molgen_grid.grid.state import STATES
from slurm_cluster import wait_for_state

#: A warning the light task adds to its cell's summary (its `warning` knob); the benchmark's own (one timed
#: repeat) is checked where its report is read (tests/test_report.py).
A_WARNING = "figures_not_to_trust_alone"  # one word: a value safe in a cell name


def assert_status_contract(status: dict, cwd: Path) -> None:
    """Every field of `--status --json`, typed, and consistent with the others."""
    assert set(status) == {"experiment", "partial", "counts", "cells"}
    assert isinstance(status["experiment"], str)
    assert status["partial"] is None or isinstance(status["partial"], str)
    counts = status["counts"]
    assert set(counts) <= set(STATES) and all(isinstance(n, int) and n > 0 for n in counts.values())
    assert sum(counts.values()) == len(status["cells"])
    for cell in status["cells"]:
        assert set(cell) == {"cell", "state", "job_id", "age_s", "reason", "log", "overrides"}, cell
        assert cell["state"] in STATES
        assert cell["overrides"] and all(isinstance(o, str) and "=" in o for o in cell["overrides"])
        assert cell["cell"] == ",".join(cell["overrides"])  # the name is the configuration, nothing else
        assert cell["reason"] is None or isinstance(cell["reason"], str)
        if cell["state"] == "missing":
            assert cell["job_id"] is None and cell["age_s"] is None and cell["log"] is None
            continue
        assert isinstance(cell["job_id"], str) and cell["job_id"]
        assert isinstance(cell["age_s"], float) and cell["age_s"] >= 0
        if cell["state"] == "done":
            log = Path(cell["log"])
            assert log.is_relative_to(cwd / "results") and log.is_file()
    tally = pd.Series([c["state"] for c in status["cells"]]).value_counts().to_dict()
    assert tally == counts


def test_status_json_fields_and_warnings_where_they_are_read(light: Light) -> None:
    tool = light
    warned = f"warning={A_WARNING}"
    grid = [warned, "variant=a,b"]
    assert_status_contract(tool.status(*grid), tool.cwd)
    run = tool.cli(warned, "variant=a")
    assert f"  warning: {A_WARNING}" in run.stdout
    assert ", value " in run.stdout  # the headline figure
    status = tool.status(*grid)
    assert status["counts"] == {"done": 1, "missing": 1}
    assert_status_contract(status, tool.cwd)

    tool.cli_here("--report", *grid)
    out = tool.cwd / "artifacts" / "default"
    frame = pd.read_csv(out / "report.csv")
    assert A_WARNING in frame.loc[0, "warnings"]
    warnings = (out / "report.md").read_text().split("## Warnings", 1)[1]
    assert f"- {A_WARNING}: `" in warnings


def imported_modules(stderr: str) -> set[str]:
    """The modules `python -X importtime` reported importing."""
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def logging_commands(tmp_path: Path, log: Path) -> dict[str, str]:
    """A PATH on which sacct and squeue write one line to `log` per call, then run the real ones."""
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    for name in ("sacct", "squeue"):
        real = shutil.which(name)
        assert real, f"{name} is not installed: the test cluster is not set up"
        script = wrappers / name
        script.write_text(f'#!/bin/sh\necho {name} >> "{log}"\nexec "{real}" "$@"\n')
        script.chmod(0o755)
    return {"PATH": f"{wrappers}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.slow  # real Slurm jobs of benchmark cells
@pytest.mark.slurm
def test_status_and_dry_run_import_no_torch_and_ask_sacct_once(tool: Tool, tmp_path: Path, cluster: None) -> None:
    """Asking about a grid of local and Slurm cells costs one sacct call (and one squeue while jobs live),
    whatever the grid's size, and never imports torch or transformers."""
    grid = [*FAST, "gpu=a100,rtx3070", "kv_cache=dynamic,static", "attention=eager,sdpa"]
    tool.cli(*grid)
    wait_for_state(tool, grid, {"queued", "running", "done"})
    jobs = {a["job_id"].split("_")[0] for d in tool.cell_dirs() if not d.name.startswith(".")
            for a in attempts(d)}
    log = tmp_path / "calls.log"
    tool.extra_env = logging_commands(tmp_path, log)
    for command in (["--status", "--json"], ["--dry-run"]):
        log.unlink(missing_ok=True)
        done = tool.run([sys.executable, "-X", "importtime", "-m", "molgen_grid.cli", *command, *grid], timeout=120)
        heavy = {m for m in imported_modules(done.stderr) if m.split(".")[0] in {"torch", "transformers"}}
        assert not heavy, f"{command} imported {sorted(heavy)[:5]}"
        calls = log.read_text().split() if log.exists() else []
        assert calls.count("sacct") == 1 and calls.count("squeue") <= 1, (command, calls)
    tool.extra_env = {}
    # what was asked is answered: the benchmark cells need not finish (they would take the cluster's CPUs)
    subprocess.run(["scancel", *sorted(jobs)], check=True)
    wait_for_state(tool, grid, {"failed", "done"}, timeout=120)


def test_another_config_tree_through_molgen_grid_conf(tool: Tool, tmp_path: Path) -> None:
    """A copy of conf/ with one more option: the console script plans it, and refuses it without the copy."""
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    (conf / "attention" / "sdpa_copy.yaml").write_text((ROOT / "conf" / "attention" / "sdpa.yaml").read_text())
    script = Path(sys.executable).parent / "molgen-grid"
    args = [str(script), "--dry-run", *FAST, "attention=sdpa_copy"]
    tool.extra_env = {"MOLGEN_GRID_CONF": str(conf)}
    planned = tool.run(args, check=True, timeout=120)
    assert "experiment default: 2 of 2 cells would run" in planned.stdout and "attention=sdpa_copy" in planned.stdout
    tool.extra_env = {}
    refused = tool.run(args, check=False, timeout=120)
    assert refused.returncode != 0 and "sdpa_copy" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.slow
def test_a_cell_through_sbatch_run_sh(tmp_path: Path) -> None:
    """The README's command, as typed: it runs from the project root; the results go where they are told. The
    cell is the light study's (its config tree by --config-dir, its task on the cell's import path)."""
    where = [f"grid.results_dir={tmp_path / 'results'}", f"grid.artifacts_dir={tmp_path / 'artifacts'}"]
    args = ["--config-dir", str(LIGHT), "variant=a", *where]
    env = {**os.environ, "COLUMNS": "300", "PYTHONPATH": str(LIGHT)}
    done = subprocess.run(["bash", str(ROOT / "sbatch" / "run.sh"), *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    assert "sweep default: 0 done, 1 run, 0 failed" in done.stdout
    (summary,) = (tmp_path / "results" / "default").glob("*/summary.json")
    assert json.loads(summary.read_text())["status"] == "ok"
    status = subprocess.run(["bash", str(ROOT / "sbatch" / "run.sh"), "--status", "--json", *args],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120, check=True, env=env)
    assert json.loads(status.stdout)["counts"] == {"done": 1}
