"""Hydra's basic sweeper, less the per-cell composition it does to validate a batch.

BasicSweeper composes every cell's config before launching (about 100 ms each); this sweeper expands the same
override grammar and leaves validation to the launcher's plan, which checks each distinct override once.
It also turns bad input into one line on stderr and exit status 2, instead of a traceback.
"""
from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from molgen_grid.errors import InputError, Interrupted, closed_pipe, fail, interrupted
from molgen_grid.grid.collector import paused
from molgen_grid.grid.settings import read_settings


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.molgen_grid_plugins.GridSweeper"
    #: BasicSweeper's setting, kept for its constructor: every cell of the grid is planned together.
    max_batch_size: Optional[int] = None
    #: The experiment's grid: `axis: option,option`, merged under the command line's overrides.
    params: Optional[Dict[str, str]] = None
    #: A plain `python -m molgen_grid OVERRIDES`: one cell, the experiment's grid left out. (Setting `params`
    #: to `{}` on the command line cannot clear it: Hydra merges a dict override into the experiment's dict.)
    single: bool = False


class GridSweeping:
    """The engine's sweep, on top of Hydra's BasicSweeper (its override expansion and batching).

    The sweeper Hydra instantiates is this mixed with BasicSweeper in hydra_plugins.molgen_grid_plugins, not a
    subclass bound here at import: each plugin scan (the first use, and again whenever Hydra's test fixtures
    restore its singletons) executes Hydra's core plugin modules anew, after which the BasicSweeper this module
    saw would reach, through its own `super(BasicSweeper, self)`, a class it no longer is."""

    # Set by BasicSweeper, the class this is mixed with.
    hydra_context: Any
    launcher: Any
    config: Any

    def __init__(self, max_batch_size: Optional[int], params: Optional[Dict[str, str]] = None,
                 single: bool = False) -> None:
        super().__init__(max_batch_size, None if single else params)

    def sweep(self, arguments: List[str]) -> Any:
        assert self.hydra_context is not None and self.launcher is not None
        returns: Any = []
        try:
            parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
            overrides = parser.parse_overrides(self._parse_config() + list(arguments) + self._test_mode())
            with paused():  # tens of thousands of override lists, all kept: nothing to collect
                (cells,) = self.split_arguments(overrides, None)
            returns = self.launcher.launch(cells, initial_job_idx=0)  # an app's jobs (app mode), else none
        except InputError as exc:
            fail(str(exc))
        except (HydraException, OmegaConfBaseException) as exc:
            fail(str(exc).strip().splitlines()[0])
        except BrokenPipeError:
            closed_pipe()
        except (KeyboardInterrupt, Interrupted) as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            interrupted(signum, self._interruption(signum))
        outcome = getattr(self.launcher, "outcome", None)
        if outcome is not None and outcome.failed:
            sys.exit(1)
        return [returns] if returns else []

    def _test_mode(self) -> list[str]:
        """`--limit N` (`hydra.launcher.limit=N`): the study's `grid.limit_key` set to N in every cell."""
        limit = OmegaConf.select(self.config, "hydra.launcher.limit")
        if limit is None:
            return []
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InputError(f"--limit {limit}: give a positive number of items per cell")
        key = read_settings(self.config.get("grid")).limit_key
        if key is None:
            raise InputError("--limit: this study has no test mode: name the key that sets how many items a cell "
                             "takes in its config (grid.limit_key)")
        return [f"{key}={limit}"]

    def _interruption(self, signum: int) -> str:
        """What the interrupt stopped, and what it left running (Slurm jobs already submitted)."""
        outcome = getattr(self.launcher, "outcome", None)
        running = outcome.running if outcome is not None else None
        line = (f"cell {running} stopped and is recorded as interrupted; the next run reruns it" if running
                else "no cell was running")
        jobs = outcome.jobs if outcome is not None else []
        if jobs:
            line += (f"; Slurm jobs already submitted keep going ({', '.join(jobs)}): follow them with --status "
                     f"or --wait, cancel them with scancel {' '.join(jobs)}")
        return line
