"""App mode: the grid launcher under another project's own `@hydra.main` app.

An app that adds `override hydra/launcher: grid` to its defaults and has no `grid.task`/`grid.command` gets the
engine's resume for its multiruns: each job is a cell in a stable directory under `hydra.sweep.dir`, its function
runs there through Hydra's `run_job` in a fresh process, its return value is stored as the cell's summary, and a
rerun runs only what is missing, failed, interrupted or stale. docs/hydra-apps.md is the user's page.
"""
from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig, OmegaConf


def is_app(config: DictConfig, task_function: Callable) -> bool:
    """Whether the launcher serves an app's own task function: its config names no engine task or command, and
    the sweep is not the engine's front door (a study that names neither is refused there, in one line)."""
    # imported here, not above: Hydra loads the launcher (and so this package) with its plugins in every cell's
    # process too, which needs no front door; only a sweep asks this
    from molgen_grid.grid.front_door import never_called

    return task_function is not never_called and OmegaConf.select(config, "grid.task", default=None) is None \
        and OmegaConf.select(config, "grid.command", default=None) is None
