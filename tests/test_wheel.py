"""The tool as a wheel (issue 17): built from the project, installed (not editable) into a scratch venv, run from
a directory that is not the project, its config tree found inside the package and its results under the
directory it runs in.

The scratch venv takes the libraries from the project's venv (a path file names its site-packages: torch and
transformers are not installed a second time); molgen_grid itself comes only from the wheel, which the test
checks."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import FAST, ROOT

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "300", "HOME": str(cwd)})
    assert done.returncode == 0, f"{cmd}\n{done.stdout}\n{done.stderr}"
    return done


def test_the_wheel_runs_the_default_experiment_from_any_directory(tmp_path: Path) -> None:
    source = tmp_path / "source"  # built from a copy: a build writes build/ beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("molgen_grid", "hydra_plugins"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
         str(source)], tmp_path)
    (wheel,) = dist.glob("molgen_grid-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "molgen_grid/conf/config.yaml" in names and "molgen_grid/conf/experiment/default.yaml" in names
    assert "molgen_grid/bench/embedded_model/model.safetensors" in names
    assert "molgen_grid/bench/embedded_model/draft/model.safetensors" in names  # decoding=assisted's draft
    assert "molgen_grid/conf/decoding/assisted.yaml" in names
    assert "hydra_plugins/molgen_grid_plugins/__init__.py" in names

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    tmp_path).stdout.strip())
    (site / "project-libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp_path)
    where = run([str(python), "-c", "import molgen_grid; print(molgen_grid.__file__)"], tmp_path).stdout
    assert where.startswith(str(site)), where

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tool = str(venv / "bin" / "molgen-grid")
    done = run([tool, *FAST, "kv_cache=dynamic"], elsewhere)
    assert "experiment default: 1 cell, 1 to run" in done.stdout and "0 done, 1 run, 0 failed" in done.stdout
    status = json.loads(run([tool, "--status", "--json", *FAST, "kv_cache=dynamic"], elsewhere).stdout)
    assert status["counts"] == {"done": 1}
    (summary,) = (elsewhere / "results" / "default").glob("*/summary.json")
    assert json.loads(summary.read_text())["metrics"]["generated_tokens"] > 0
