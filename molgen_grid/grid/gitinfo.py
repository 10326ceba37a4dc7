"""The code a result came from: the study's own repository and the engine's version.

A result is the study's code run by the engine: the study's git commit (and whether its tree had uncommitted
changes) says which code of the study ran, the engine's version which engine ran it. The engine's commit is
recorded too when it runs from a checkout of its own (an editable install), where its version alone does not
say which code it was; a wheel's version says it.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import molgen_grid


def git_provenance(where: Path) -> dict[str, object]:
    """The commit of the git checkout `where` is in and whether its tracked files have changes (None: not a
    checkout, or no git)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no") if sha else None
    return {"git_sha": sha, "git_dirty": None if dirty is None else bool(dirty)}


def engine_provenance(project: Path, known: dict[str, object]) -> dict[str, Any]:
    """The engine's installed version, and its commit when it runs from a checkout of its own (a wheel installed
    into a virtual environment inside some other repository must not record that repository's commit). `known`:
    `project`'s git provenance, taken as the engine's when the engine runs from that very checkout (git once)."""
    from importlib import metadata  # only where a cell is launched: a status never needs it (10 ms)

    try:
        version: str | None = metadata.version("molgen_grid")
    except metadata.PackageNotFoundError:
        version = None
    source = Path(molgen_grid.__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return {"version": version}
    same = project.resolve() == source
    return {"version": version, **(known if same else git_provenance(source))}


def provenance(project: Path) -> dict[str, Any]:
    """What a cell's summary records of the code that produced it: the study's repository (the project directory
    the sweep ran in) and the engine."""
    study = git_provenance(project)
    return {**study, "engine": engine_provenance(project, study)}
