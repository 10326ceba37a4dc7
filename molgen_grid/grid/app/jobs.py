"""One job of an app's multirun as a cell: its composed config, its directory, its fingerprint and its state.

The directory is what Hydra resolves from `hydra.sweep.dir`/`hydra.sweep.subdir`, except that Hydra's default
subdir, `${hydra.job.num}`, is replaced by the cell's name (its normalised overrides, cells.py): a job's number
is its place in one sweep, so a rerun that adds, drops or reorders jobs would find another job's results there.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from molgen_grid.grid.cells import Cell, canonical, make_cell
from molgen_grid.grid.fingerprint import code_hash, digest
from molgen_grid.grid.state import CellState, JobView, read_state
from molgen_grid.grid.store import CellStore

#: Hydra's default `hydra.sweep.subdir`: a position in one sweep, never a stable name.
NUMBERED_SUBDIR = "${hydra.job.num}"


@dataclass
class AppJob:
    """One job of the sweep: its number, overrides, composed config (Hydra's section included) and cell."""

    idx: int
    overrides: list[str]
    cfg: DictConfig
    cell: Cell
    store: CellStore
    fingerprint: dict[str, Any]
    state: CellState = field(default_factory=lambda: CellState("missing"))
    why: str | None = None

    @property
    def out_dir(self) -> Path:
        return self.store.dir


def cell_of(overrides: Sequence[str], parser: OverridesParser) -> Cell:
    """The cell these task overrides select: prefixes (`+`, `++`) dropped, each value spelled one way, sorted by
    key as Hydra's `override_dirname` sorts them."""
    extra: dict[str, str] = {}

    def reads_back(text: str, value: Any) -> bool:
        try:
            back = parser.parse_override(f"k={text}").value()
        except HydraException:
            return False
        return type(back) is type(value) and back == value

    for line in overrides:
        parsed = parser.parse_override(line)
        if parsed.is_delete():
            continue
        extra[parsed.key_or_group.replace("/", ".")] = canonical(parsed.value(), reads_back)
    return make_cell([], extra)


def task_config(cfg: DictConfig, leave_out: str | None = None) -> DictConfig:
    """The job's config as the app's function receives it: without Hydra's section (and `leave_out`)."""
    out = cfg.copy()
    with read_write(out), open_dict(out):
        out.pop("hydra", None)
        if leave_out is not None:
            out.pop(leave_out, None)
    return out


def code_files(task_function: Callable) -> list[Path]:
    """The app's code a result depends on: the file of its task function's module."""
    try:
        return [Path(task_function.__code__.co_filename).resolve()]
    except AttributeError:
        return []


def fingerprint(cfg: DictConfig, task_function: Callable, resources: str | None = None) -> dict[str, Any]:
    """The job's identity: its config (unresolved, so `${now:}` does not change it; the resource group, which
    only says where it runs, left out) and the app's code."""
    code = {str(p): code_hash(p) for p in code_files(task_function) if p.is_file()}
    return {"config": digest(OmegaConf.to_yaml(task_config(cfg, resources))), "code": code}


def stale_reason(stored: dict | None, now: dict[str, Any]) -> str | None:
    """Why a stored result no longer stands for this job (None when it does)."""
    stored = stored or {}
    if stored.get("config") != now["config"]:
        return "the app's config changed since it ran"
    changed = [Path(f).name for f in set(stored.get("code", {})) | set(now["code"])
               if stored.get("code", {}).get(f) != now["code"].get(f)]
    return f"the app's code changed since it ran: {', '.join(sorted(changed))}" if changed else None


def prepare_job(idx: int, overrides: Sequence[str], cfg: DictConfig, parser: OverridesParser,
                task_function: Callable, resources: str | None = None) -> AppJob:
    """The job's number, cell, directory and fingerprint (no state read yet, nothing written)."""
    cell = cell_of(cfg.hydra.overrides.task, parser)
    with open_dict(cfg):
        cfg.hydra.job.id = f"{cfg.hydra.job.name}_{idx}"
        cfg.hydra.job.num = idx
        if OmegaConf.to_container(cfg.hydra.sweep, resolve=False).get("subdir") == NUMBERED_SUBDIR:
            cfg.hydra.sweep.subdir = cell.name
    out = Path(os.path.abspath(os.path.join(str(cfg.hydra.sweep.dir), str(cfg.hydra.sweep.subdir))))
    return AppJob(idx, list(overrides), cfg, cell, CellStore(out.parent, out.name),
                  fingerprint(cfg, task_function, resources))


def job_state(job: AppJob, views: Mapping[str, JobView], lock_held: bool = False) -> CellState:
    """The job's state, read from its directory and its executor's view, as an engine cell's is."""
    return read_state(job.store, lambda summary: stale_reason(summary.get("fingerprint"), job.fingerprint), views,
                      lock_held=lock_held)


def summary_value(store: CellStore) -> Any:
    """The return value a finished job stored: in its summary, or pickled beside it."""
    import cloudpickle

    summary = store.summary() or {}
    if summary.get("value_file"):
        return cloudpickle.loads(store.path(summary["value_file"]).read_bytes())
    return summary.get("value")


def json_value(value: Any) -> bool:
    """Whether a return value reads back from JSON as itself."""
    try:
        return json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        return False
