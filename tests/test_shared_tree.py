"""A results tree shared on a cluster: a colleague who may only read it asks about it and reports it, a group
that shares it keeps it writable, and a file system without working locks is named in one line.

The tests run as root, whom file modes do not stop: the reader runs without the capabilities that override
them (setpriv drops CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER), so the modes bind it as they bind any
other user. The cells are the light study's (what is shared is the engine's tree, whatever a cell computes).
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Light, Tool

#: A process as a user who may only read what the modes let them read.
WITHOUT_OVERRIDES = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--inh-caps", "-all",
                     "--"]


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under `root` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def as_reader(tool: Tool, *args: str) -> subprocess.CompletedProcess:
    return tool.run([*WITHOUT_OVERRIDES, sys.executable, "-m", "molgen_grid.cli", *tool.prefix, *args], check=False,
                    timeout=300)


@pytest.mark.slow
def test_a_read_only_tree_answers_status_dry_run_and_report(light: Light, tmp_path: Path) -> None:
    tool = light
    grid = [f"grid.artifacts_dir={tmp_path / 'artifacts'}"]
    tool.cli(*grid, "variant=a")
    for path in tool.results.rglob("*"):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    tool.results.chmod(0o555)
    before = tree(tool.results)
    denied = subprocess.run([*WITHOUT_OVERRIDES, "touch", str(tool.results / "probe")], capture_output=True)
    assert denied.returncode != 0, "the reader could write: the test would prove nothing"

    status = as_reader(tool, "--status", *grid)
    assert status.returncode == 0 and "1 done, 1 missing" in status.stdout, status.stderr
    plan = as_reader(tool, "--dry-run", *grid)
    assert plan.returncode == 0 and "1 of 2 cells would run" in plan.stdout, plan.stderr
    report = as_reader(tool, "--report", *grid)
    assert report.returncode == 0 and "1 cell reported (1 missing not yet)" in report.stdout, report.stderr
    assert (tmp_path / "artifacts" / "default" / "report.md").is_file()

    run = as_reader(tool, *grid)
    assert run.returncode != 0 and "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert str(tool.results) in run.stderr and "permission" in run.stderr.lower(), run.stderr
    assert tree(tool.results) == before


@pytest.mark.slow
def test_a_group_shared_tree_stays_group_writable(light: Light) -> None:
    tool = light
    done = subprocess.run([sys.executable, "-m", "molgen_grid.cli", *tool.prefix, "variant=a"], cwd=tool.cwd,
                          env=tool.env(), capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: os.umask(0o002))
    assert done.returncode == 0, done.stderr
    written = list(tool.results.rglob("*"))
    names = {p.name for p in written}
    assert {"summary.json", "attempts.jsonl", "config.yaml", ".lock"} <= names
    closed = [p for p in written if not p.stat().st_mode & stat.S_IWGRP]
    # submitit's files of the job (its pickles, its logs) are the job's own, writable by their owner alone: a
    # pickle runs code when loaded (executors/job_entry.py); every folder and every file of the engine's is shared
    assert closed and all(p.parent.parent.name == "logs" and p.is_file() and p.name.split("_")[0].isdigit()
                          for p in closed), closed


def test_a_file_system_without_flock_is_named_in_one_line_faked_file_system(light: Light, tmp_path: Path) -> None:
    """flock answering ENOLCK as on an NFS mount without locking: a fake, since no such mount exists here."""
    fake = tmp_path / "no_flock"
    fake.mkdir()
    (fake / "sitecustomize.py").write_text(
        "import errno, fcntl\n"
        "def flock(fd, op):\n"
        "    raise OSError(errno.ENOLCK, 'No locks available')\n"
        "fcntl.flock = flock\n")
    tool = light
    tool.extra_env = {"PYTHONPATH": os.pathsep.join([str(fake), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = tool.cli("variant=a", check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "file locks (flock) do not work on the file system of" in line
    assert "put grid.results_dir on a file system with flock" in line
