"""What is Hydra's in an app's job: its cell named from its task overrides, its config composed, its directory.

The directory is what Hydra resolves from `hydra.sweep.dir`/`hydra.sweep.subdir`, except that Hydra's default
subdir, `${hydra.job.num}`, is replaced by the cell's name (its normalised overrides, cells.py): a job's number
is its place in one sweep, so a rerun that adds, drops or reorders jobs would find another job's results there.
Only a job whose subdir is the user's own is composed to find its directory; the rest compose in their own
process (task/hydra_app.py), as Hydra's Slurm launcher plugin composes on the node.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from molgen_grid.errors import InputError
from molgen_grid.grid.cells import Cell, ValueSpelling, canonical, make_cell
from molgen_grid.grid.config_keys import flat_keys
from molgen_grid.grid.store import CellStore

#: Hydra's default `hydra.sweep.subdir`: a position in one sweep, never a stable name.
NUMBERED_SUBDIR = "${hydra.job.num}"


def cell_of(overrides: Sequence[str], parser: OverridesParser, spelling: ValueSpelling) -> Cell:
    """The cell these task overrides select: prefixes (`+`, `++`) dropped, a group's package kept
    (`model@encoder=small`), each value spelled one way, sorted by key as Hydra's `override_dirname` sorts them."""
    extra: dict[str, str] = {}
    for line in overrides:
        parsed = parser.parse_override(line)
        if parsed.is_delete():
            continue
        key = parsed.key_or_group.replace("/", ".") + (f"@{parsed.package}" if parsed.package is not None else "")
        extra[key] = canonical(parsed.value(), spelling.reads_back)
    return make_cell([], extra)


def compose_job(loader: Any, sweep: DictConfig, overrides: Sequence[str], idx: int, cell: Cell) -> DictConfig:
    """The job's config (Hydra's section included), as Hydra's launchers compose it, numbered, its default
    subdir replaced by its cell's name."""
    cfg = loader.load_sweep_config(sweep, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.id = f"{cfg.hydra.job.name}_{idx}"
        cfg.hydra.job.num = idx
        if numbered(cfg):
            cfg.hydra.sweep.subdir = cell.name
    return cfg


def numbered(cfg: DictConfig) -> bool:
    """Whether the sweep leaves `hydra.sweep.subdir` at Hydra's default (the launcher names the directory)."""
    return OmegaConf.to_container(cfg.hydra.sweep, resolve=False).get("subdir") == NUMBERED_SUBDIR


def task_config(cfg: DictConfig, leave_out: str | None = None) -> DictConfig:
    """The job's config as the app's function receives it: without Hydra's section (and `leave_out`)."""
    out = cfg.copy()
    with read_write(out), open_dict(out):
        out.pop("hydra", None)
        if leave_out is not None:
            out.pop(leave_out, None)
    return out


def config_part(cfg: DictConfig, resources: str | None) -> dict[str, str]:
    """The config part of a job's fingerprint: its composed config key by key (so staleness names the key),
    unresolved (so `${now:}` does not change it), the resource group left out (it only says where the job runs)."""
    return flat_keys(OmegaConf.to_container(task_config(cfg, resources), resolve=False))


@dataclass
class AppJob:
    """One job of an app's sweep: its number, task overrides, cell and directory; composed only when needed."""

    idx: int
    overrides: list[str]
    cell: Cell
    store: CellStore
    compose: Callable[[], DictConfig] = field(repr=False)
    _cfg: DictConfig | None = field(default=None, repr=False)

    @property
    def cfg(self) -> DictConfig:
        if self._cfg is None:
            self._cfg = self.compose()
        return self._cfg

    @property
    def label(self) -> str:
        return f"job #{self.idx} ({' '.join(self.overrides) or 'no overrides'})"


def job_dir(sweep_dir: Path, cfg: DictConfig | None, cell: Cell) -> Path:
    """Where the job runs: its cell's name under the sweep dir, or the subdir the user set, as it resolves."""
    subdir = cell.name if cfg is None else str(cfg.hydra.sweep.subdir)
    return Path(os.path.abspath(os.path.join(sweep_dir, subdir)))


def check_directories(jobs: Sequence[AppJob], sweep_dir: Path) -> None:
    """Refuse, before anything is claimed or moved, a job whose directory is not its own: the sweep dir itself,
    one that holds the sweep dir, one inside another job's, or one two jobs share."""
    fix = ("give each job a directory of its own: leave hydra.sweep.subdir to the launcher (it names each job "
           "after its overrides), or make it tell every job apart (${hydra.job.override_dirname} without "
           "exclude_keys)")
    owner: dict[Path, AppJob] = {}
    for job in jobs:
        where = job.store.dir
        if where == sweep_dir or sweep_dir.is_relative_to(where):
            raise InputError(f"{job.label} would run in {where}, which holds the sweep dir {sweep_dir}: {fix}")
        if where in owner:
            raise InputError(f"{owner[where].label} and {job.label} would share the directory {where}: {fix}")
        owner[where] = job
    for job in jobs:
        for parent in job.store.dir.parents:
            if parent in owner:
                raise InputError(f"{job.label} would run in {job.store.dir}, inside the directory of "
                                 f"{owner[parent].label}: {fix}")
            if parent == sweep_dir:
                break
