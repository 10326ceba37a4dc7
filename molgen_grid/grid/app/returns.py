"""A `JobReturn` for a job that was not run because its cell is done: filled in as `run_job` fills it, so any
sweeper sees every job's result, in order, with the stored return value."""
from __future__ import annotations

import copy
import os
from typing import Any

from hydra import version
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobRuntime, JobStatus
from omegaconf import OmegaConf, open_dict, read_write

from molgen_grid.grid.app.jobs import AppJob, task_config


def stored_return(job: AppJob, value: Any) -> JobReturn:
    """The job's return as if it had just run: its configs, its directory, its stored value."""
    cfg = job.cfg
    previous = HydraConfig.instance().cfg
    try:
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = str(job.out_dir)
        HydraConfig.instance().set_config(cfg)
        hydra_cfg = copy.deepcopy(HydraConfig.instance().cfg)
        chdir = hydra_cfg.hydra.job.chdir
        if chdir is None:
            chdir = not version.base_at_least("1.2")
        return JobReturn(overrides=OmegaConf.to_container(cfg.hydra.overrides.task), cfg=task_config(cfg),
                         hydra_cfg=hydra_cfg, working_dir=str(job.out_dir) if chdir else os.getcwd(),
                         task_name=JobRuntime.instance().get("name"), status=JobStatus.COMPLETED,
                         _return_value=value)
    finally:
        HydraConfig.instance().cfg = previous  # type: ignore[assignment]
