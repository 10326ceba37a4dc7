"""The `JobReturn` of every job of an app's sweep, run now or earlier, filled in as `run_job` fills it, so any
sweeper sees every job's result, in order: the stored return value of a done job, the exception of a failed one
(the sweeper re-raises it, as it does under any launcher).

A stored value is read only from the job's own directory, by the name the engine writes; a pickle only when
the user running the sweep owns it and nobody else can write it (store.load_pickle).
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any

from hydra import version
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobRuntime, JobStatus
from hydra.errors import HydraException
from omegaconf import DictConfig, open_dict, read_write

from molgen_grid.errors import InputError
from molgen_grid.grid.app.jobs import AppJob, task_config
from molgen_grid.grid.state import DONE, CellState
from molgen_grid.grid.store import load_pickle
from molgen_grid.grid.task.hydra_app import EXCEPTION_FILE, VALUE_FILE


def stored_value(job: AppJob) -> Any:
    """The return value a done job stored: in its summary, or pickled beside it under the engine's name."""
    summary = job.store.summary() or {}
    named = summary.get("value_file")
    if named is None:
        return summary.get("value")
    if named != VALUE_FILE:
        raise InputError(f"{job.store.path('summary.json')} names value_file {named!r}: only {VALUE_FILE} in the "
                         "job's own directory is read (rerun the job to store its value anew)")
    return load_pickle(job.store.path(VALUE_FILE))


def status_value(job: AppJob) -> tuple[Any, str | None]:
    """What a status shows of a done job's stored value, never loading a pickle (a status runs no code of the
    app's): the value the summary holds, or the file a value JSON could not hold is kept in."""
    summary = job.store.summary() or {}
    return summary.get("value"), summary.get("value_file")


def value_text(value: Any, value_file: str | None, width: int = 100) -> str:
    """A stored value on one line (compact JSON, cut at `width`), or where it is kept."""
    if value_file is not None:
        return f"returned a value kept in {value_file}"
    text = json.dumps(value, separators=(", ", ": "), default=str)
    return "returned " + (text if len(text) <= width else text[:width - 3] + "...")


def job_return(job: AppJob, state: CellState, chdir: bool) -> JobReturn:
    """The job's return as if it had just run: its configs, its directory, its stored value or exception.
    `chdir`: whether its function ran in its directory (Hydra's `hydra.job.chdir`, the same for its option set)."""
    if state.state == DONE:
        return StoredReturn(job, JobStatus.COMPLETED, stored_value(job), chdir)
    exception: BaseException = HydraException(f"{job.label} ({job.store.dir}) ended {state.state}"
                                              f"{f': {state.reason}' if state.reason else ''}")
    if job.store.path(EXCEPTION_FILE).exists():
        try:
            exception = load_pickle(job.store.path(EXCEPTION_FILE))
        except InputError:
            pass  # the engine's own words then
    return StoredReturn(job, JobStatus.FAILED, exception, chdir)


def changes_dir(hydra_cfg: DictConfig) -> bool:
    """Whether Hydra runs a job's function in its directory (`hydra.job.chdir`, by default as the version base
    says)."""
    chdir = hydra_cfg.hydra.job.chdir
    return not version.base_at_least("1.2") if chdir is None else bool(chdir)


class StoredReturn(JobReturn):
    """A job's `JobReturn` whose configs (the job's and Hydra's) are composed when a sweeper first reads them, not
    for every job of a rerun: a sweeper that reads only values never composes a job."""

    def __init__(self, job: AppJob, status: JobStatus, value: Any, chdir: bool) -> None:
        self.overrides = [o for o in job.overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
        self.working_dir = str(job.store.dir) if chdir else os.getcwd()
        self.task_name = JobRuntime.instance().get("name")
        self.status = status
        self._return_value = value
        self._job = job
        self._configs: tuple[DictConfig | None, DictConfig | None] | None = None

    def _composed(self) -> tuple[DictConfig | None, DictConfig | None]:
        if self._configs is None:
            self._configs = _configs(self._job)
        return self._configs

    @property  # type: ignore[override]
    def cfg(self) -> DictConfig | None:
        return self._composed()[0]

    @cfg.setter
    def cfg(self, value: DictConfig | None) -> None:
        self._configs = (value, self._composed()[1])

    @property  # type: ignore[override]
    def hydra_cfg(self) -> DictConfig | None:
        return self._composed()[1]

    @hydra_cfg.setter
    def hydra_cfg(self, value: DictConfig | None) -> None:
        self._configs = (self._composed()[0], value)


def _configs(job: AppJob) -> tuple[DictConfig, DictConfig]:
    """The job's config and Hydra's (as HydraConfig holds it while the job runs), composed now."""
    cfg = job.cfg
    previous = HydraConfig.instance().cfg
    try:
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = str(job.store.dir)
        HydraConfig.instance().set_config(cfg)
        return task_config(cfg), copy.deepcopy(HydraConfig.instance().cfg)
    finally:
        HydraConfig.instance().cfg = previous  # type: ignore[assignment]
