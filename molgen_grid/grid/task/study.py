"""A study's cell config, composed in the cell's own process from its overrides, for the callable and the command
kinds alike: the submitting side never composes every cell (about 100 ms each), a cell composes only its own.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from molgen_grid.grid.cells import Cell
from molgen_grid.grid.config_part import ConfigPart
from molgen_grid.grid.fingerprint import code_part, library_versions
from molgen_grid.grid.settings import code_folders, read_settings

#: Sections of a composed config that are not the cell's config.
NOT_CELL = ("hydra", "grid")


@dataclass
class StudyConfig:
    """Where and how to compose one cell of a study (plain data: it is pickled to the cell's process)."""

    #: The config directory, the primary config, and the overrides that come before the cell's own (Hydra's,
    #: the experiment's choice, the engine settings given on the command line).
    conf_dir: str
    config_name: str
    base_overrides: list[str]
    #: The overrides that reproduce the cell, and those that only say how it runs (time limit, ...).
    overrides: list[str]
    run_overrides: list[str]
    #: The directory the sweep ran in: relative paths of the study's config are relative to it.
    project_dir: str
    #: The cell as the plan named it, and the overrides the plan read the experiment's files with (Hydra's, the
    #: experiment's choice): the config part of its fingerprint is taken again here, from the files as they are
    #: now, as the plan takes it (config_part.py).
    cell: Cell
    files_overrides: list[str]

    def compose(self) -> tuple[DictConfig, DictConfig, dict[str, str]]:
        """The cell's whole config (Hydra's runtime set, so `${hydra:runtime.cwd}` resolves to the project), the
        engine's settings in it, and the config part of its fingerprint from the same files; the study's code
        first on the import path."""
        with initialize_config_dir(config_dir=self.conf_dir, version_base="1.3"):
            full = compose(self.config_name, overrides=self.base_overrides + self.overrides + self.run_overrides,
                           return_hydra_config=True)
            settings = read_settings(full.get("grid"))
            config_part = ConfigPart.in_cell(GlobalHydra.instance().config_loader(), self.config_name,
                                             self.files_overrides, set(settings.not_identity))(self.cell)
        HydraConfig.instance().set_config(full)
        sys.path[:0] = [str(Path(folder).resolve()) for folder in code_folders(settings)] + [self.project_dir]
        return full, settings, config_part

    def fingerprint(self, settings: Any, config_part: dict[str, str]) -> dict[str, Any]:
        """The config, code and libraries parts, as they are now: a queued job may start after an edit, and its
        result records what it ran."""
        return {"config": config_part, "code": code_part(settings, Path(self.project_dir)),
                "libraries": library_versions(settings)}


def cell_config(full: DictConfig) -> dict[str, Any]:
    """The config a task receives: the study's own keys, resolved."""
    return OmegaConf.to_container(OmegaConf.masked_copy(full, [k for k in full if k not in NOT_CELL]), resolve=True)
