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
from omegaconf import OmegaConf, open_dict, read_write

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


def job_return(job: AppJob, state: CellState) -> JobReturn:
    """The job's return as if it had just run: its configs, its directory, its stored value or exception."""
    if state.state == DONE:
        return _return(job, JobStatus.COMPLETED, stored_value(job))
    exception: BaseException = HydraException(f"{job.label} ({job.store.dir}) ended {state.state}"
                                              f"{f': {state.reason}' if state.reason else ''}")
    if job.store.path(EXCEPTION_FILE).exists():
        try:
            exception = load_pickle(job.store.path(EXCEPTION_FILE))
        except InputError:
            pass  # the engine's own words then
    return _return(job, JobStatus.FAILED, exception)


def _return(job: AppJob, status: JobStatus, value: Any) -> JobReturn:
    cfg = job.cfg
    previous = HydraConfig.instance().cfg
    try:
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = str(job.store.dir)
        HydraConfig.instance().set_config(cfg)
        hydra_cfg = copy.deepcopy(HydraConfig.instance().cfg)
        chdir = hydra_cfg.hydra.job.chdir
        if chdir is None:
            chdir = not version.base_at_least("1.2")
        return JobReturn(overrides=OmegaConf.to_container(cfg.hydra.overrides.task), cfg=task_config(cfg),
                         hydra_cfg=hydra_cfg, working_dir=str(job.store.dir) if chdir else os.getcwd(),
                         task_name=JobRuntime.instance().get("name"), status=status, _return_value=value)
    finally:
        HydraConfig.instance().cfg = previous  # type: ignore[assignment]
