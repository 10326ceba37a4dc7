"""The two directories the engine writes, checked before anything is written: results and artifacts.

A report rewrites its experiment's folder under the artifacts directory, and a run writes cells under the
results directory; pointed at each other, at the project itself or at a parent of it, either would overwrite
what it must not. So, as experiment names are, these settings are checked: no `..`, not the working directory
or one of its parents, and never one inside the other.
A run also checks that it may write the results tree before it claims any cell; status, dry-run and report
never write it, so a colleague with read access can use them.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from molgen_grid.errors import InputError


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def checked_dir(cwd: Path, value: str, what: str, apart_from: Path | None = None) -> Path:
    """`value` (relative to `cwd`) resolved, or one line saying why it cannot be used."""
    if ".." in Path(str(value)).parts:
        raise InputError(f"{what} {value!r} climbs out with '..': give a directory below the project or an "
                         "absolute path")
    path = (cwd / str(value)).resolve()
    if _within(cwd.resolve(), path):
        raise InputError(f"{what} {value!r} is the project directory or one of its parents: give a directory "
                         "of its own (e.g. results, artifacts)")
    if apart_from is not None and (_within(path, apart_from) or _within(apart_from, path)):
        raise InputError(f"{what} {value!r} overlaps the results directory ({apart_from}): reports would "
                         "overwrite cells; give a directory apart from it")
    return path


def check_writable(root: Path) -> None:
    """One line before any cell is claimed when this user cannot write the results tree (a colleague's, read-only
    to them): asking about it and reporting it need no write, running does."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root, prefix=".write-probe."):
            pass
    except OSError as exc:
        raise InputError(f"cannot write the results tree {root} ({exc.strerror or exc}): --status, --dry-run and "
                         "--report read it as it is; to run cells, use a tree you may write "
                         "(grid.results_dir=DIR)") from None
