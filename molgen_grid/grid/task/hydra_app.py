"""A Hydra app's own function as a cell's work: composed in the job's process and run through Hydra's `run_job`,
as hydra-submitit-launcher runs it on the node, so `HydraConfig.get()`, the job's `.hydra/` and log, `chdir` and
callbacks behave as under any launcher.

The sweep ships Hydra's context, its own config and the job's overrides, Hydra's singletons (the config store,
registered resolvers) and its import path, pickled with cloudpickle once per sweep into `<sweep dir>/.sweep/`
(each job's pickle names that file): the app's function may be a closure or live in `__main__`. The return
value is the job's figures: `{"value": ...}` when it reads back from JSON as itself, else pickled beside the
summary (`value_file`). A function that raises fails the job; its exception is pickled beside the error record
too, so the sweeper can re-raise it as Hydra's launchers do.
"""
from __future__ import annotations

import functools
import json
import sys
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from hydra.core.singleton import Singleton
from hydra.core.utils import JobStatus, run_job, setup_globals
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf

from molgen_grid.grid.app.jobs import compose_job, config_part, task_config
from molgen_grid.grid.cells import Cell
from molgen_grid.grid.fingerprint import files_part
from molgen_grid.grid.store import load_pickle, write_pickle
from molgen_grid.grid.task.base import Composed
from molgen_grid.grid.task.contract import CellHandle
from molgen_grid.grid.task.located import Located

#: The file beside summary.json that holds a return value JSON cannot hold.
VALUE_FILE = "return_value.pkl"
#: The file beside error.json that holds the exception the app's function raised.
EXCEPTION_FILE = "exception.pkl"
#: The folder of the sweep dir that holds the part every job of a sweep shares (Shipped).
SWEEP_PARTS = ".sweep"


def app_code(task_function: Callable, project: Path) -> dict[str, str]:
    """The app's code a result depends on: the file of its task function's module, parsed."""
    try:
        path = Path(task_function.__code__.co_filename).resolve()
    except AttributeError:
        return {}
    return files_part([path], project.resolve())


def json_value(value: Any) -> bool:
    """Whether a return value reads back from JSON as itself."""
    try:
        return json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        return False


class Exited(RuntimeError):
    """The app's function called sys.exit: its job failed, with the exit's message or status as its reason."""


def exits_fail(task_function: Callable) -> Callable:
    """The app's function, whose sys.exit fails its job as an exception would (with a reason and a traceback in
    the job's stderr). A SystemExit passes through Hydra's `run_job` and would end the job's process with no
    record, as if it were killed; submitit's own exit (a requeue, from its signal handler) still passes."""
    @functools.wraps(task_function)
    def run(cfg: Any) -> Any:
        try:
            return task_function(cfg)
        except SystemExit as exc:
            if any(Path(frame.f_code.co_filename).parts[-3:-1] == ("submitit", "core")
                   for frame, _ in traceback.walk_tb(exc.__traceback__)):
                raise
            raise Exited(f"the app's function called sys.exit({exc.code!r})") from exc
    return run


@dataclass
class AppSweepPart:
    """What every job of one sweep shares: Hydra's context, the sweep's config, the app's function, Hydra's
    singletons and import path, the code part of the fingerprint, the resource group's name."""

    hydra_context: HydraContext
    sweep_config: DictConfig
    task_function: Callable
    singleton_state: Any
    sys_path: list[str]
    #: The code part of the fingerprint, taken in the sweep's process: the function travels by value when it
    #: lives in `__main__` (cloudpickle), so what runs is what the sweep saw, and its file is not named here.
    code: dict[str, str] = field(default_factory=dict)
    resources: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the function's own file names (located.py): a traceback names the app's file and line."""
        return {**self.__dict__, "task_function": Located(self.task_function)}


class Shipped:
    """The sweep's part, pickled once into a file in `folder` however many jobs carry it (each job's own pickle
    names the file): pickling Hydra's context and config store for every job cost about 13 ms a job."""

    def __init__(self, value: AppSweepPart, folder: Path) -> None:
        self.value: AppSweepPart | None = value
        self.folder = folder
        self.path: Path | None = None

    def __getstate__(self) -> dict[str, Any]:
        if self.path is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.path = self.folder / f"sweep-{uuid.uuid4().hex[:12]}.pkl"
            write_pickle(self.path, self.value)
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.value, self.folder = state["path"], None, state["path"].parent

    def get(self) -> AppSweepPart:
        if self.value is None:
            assert self.path is not None
            self.value = load_pickle(self.path)
        return self.value


@dataclass
class AppFunctionWork:
    """One job of an app's multirun, as its own process runs it."""

    sweep: Shipped
    overrides: list[str]
    idx: int
    cell: Cell
    _cfg: DictConfig | None = field(default=None, init=False, repr=False)

    def compose(self, cell_dir: Path) -> Composed:
        part = self.sweep.get()
        sys.path[:0] = [p for p in part.sys_path if p not in sys.path]
        setup_globals()
        Singleton.set_state(part.singleton_state)
        self._cfg = compose_job(part.hydra_context.config_loader, part.sweep_config, self.overrides, self.idx,
                                self.cell)
        fingerprint = {"config": config_part(self._cfg, part.resources), "code": part.code, "libraries": {}}
        name = getattr(part.task_function, "__name__", "function")
        return Composed(OmegaConf.to_container(task_config(self._cfg), resolve=False), fingerprint,
                        f"the app's function {name}")

    def run(self, cell: CellHandle) -> Mapping[str, Any]:
        part = self.sweep.get()
        ret = run_job(hydra_context=part.hydra_context, task_function=exits_fail(part.task_function),
                      config=self._cfg, job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        if ret.status != JobStatus.COMPLETED:
            raise ret._return_value
        value = ret._return_value
        if json_value(value):
            return {"value": value}
        write_pickle(cell.dir / VALUE_FILE, value)
        return {"value": None, "value_file": VALUE_FILE, "value_type": type(value).__name__}

    def failed(self, exc: BaseException, cell_dir: Path) -> None:
        try:
            write_pickle(cell_dir / EXCEPTION_FILE, exc)
        except Exception:  # noqa: BLE001 - an exception that cannot be pickled: its error record says enough
            (cell_dir / EXCEPTION_FILE).unlink(missing_ok=True)
