"""A Python callable as a cell's work (`grid.task`): `task(cfg, cell)` returns the cell's figures."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from omegaconf import OmegaConf

from molgen_grid.grid.dotted import load
from molgen_grid.grid.task.base import Composed
from molgen_grid.grid.task.contract import CellHandle
from molgen_grid.grid.task.study import StudyConfig, cell_config


@dataclass
class FunctionWork:
    study: StudyConfig
    _call: Any = field(default=None, init=False, repr=False)

    def compose(self, cell_dir: Path) -> Composed:
        full, settings, config_part = self.study.compose()
        config = cell_config(full)
        self._call = (load(settings.task), config)
        return Composed(config, self.study.fingerprint(settings, config_part), f"grid.task {settings.task}")

    def run(self, cell: CellHandle) -> Mapping[str, Any]:
        task, config = self._call
        return task(OmegaConf.create(config), cell)

    def failed(self, exc: BaseException, cell_dir: Path) -> None:
        """Nothing beyond the error record."""
