"""Shared helpers: the tool is run as a user runs it, in a subprocess, against a results tree in tmp_path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

import pytest

from molgen_grid.grid.store import CellStore

ROOT = Path(__file__).resolve().parent.parent
#: The smallest real cell: the embedded model, one molecule, a few tokens, one timed repeat.
FAST = ["sample_size=1", "batch_size=1", "max_new_tokens=12", "warmup=0", "repeats=1"]
T = TypeVar("T")


class Tool:
    """Runs `molgen-grid` (the front door) or `python -m molgen_grid` in one working directory."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.results = cwd / "results"
        self.extra_env: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "300", **self.extra_env}

    def cli(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "molgen_grid.cli", *args], check, timeout)

    def hydra(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "molgen_grid", *args], check, timeout)

    def popen(self, *args: str) -> subprocess.Popen:
        """A sweep in its own process group, so a test can kill its whole tree."""
        return subprocess.Popen([sys.executable, "-m", "molgen_grid.cli", *args], cwd=self.cwd, env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)

    def run(self, cmd: list[str], check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        """Any command in this working directory with this tool's environment (a console script, a wrapper)."""
        done = subprocess.run(cmd, cwd=self.cwd, env=self.env(), capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{cmd} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")
        return done

    def status(self, *args: str) -> dict:
        return json.loads(self.cli("--status", "--json", *args).stdout)

    def states(self, *args: str) -> dict[str, str]:
        return {c["cell"]: c["state"] for c in self.status(*args)["cells"]}

    def cell_dirs(self, experiment: str = "default") -> list[Path]:
        root = self.results / experiment
        return sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []


def attempts(cell_dir: Path) -> list[dict]:
    """The cell's attempts as the engine reads them (each claim completed by its launch's update lines)."""
    return CellStore(cell_dir.parent, cell_dir.name).attempts()


@pytest.fixture
def tool(tmp_path: Path) -> Tool:
    return Tool(tmp_path)


def wait_until(probe: Callable[[], T], what: str, timeout: float = 300, every: float = 0.2) -> T:
    """Poll until `probe()` is truthy and return it: tests wait for states, never for fixed times (the timeout
    only ends a test that would hang)."""
    deadline = time.time() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def started(cell_dir: Path) -> bool:
    """Whether the cell's last attempt has begun its code (its process recorded it: signals now reach it)."""
    found = attempts(cell_dir) if cell_dir.is_dir() else []
    return bool(found and found[-1].get("started_at"))


@pytest.fixture(scope="module")
def cluster() -> None:
    """The local Slurm test cluster (sbatch/test-cluster.sh), started once per module that asks for it."""
    subprocess.run(["bash", str(ROOT / "sbatch" / "test-cluster.sh"), "start"], check=True, timeout=600)
