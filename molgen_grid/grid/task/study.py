"""A study's cell config, composed in the cell's own process from its overrides, for the callable and the command
kinds alike: the submitting side never composes every cell (about 100 ms each), a cell composes only its own.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

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
    #: The config part of the fingerprint, as the plan computed it from the config files.
    fingerprint_config: dict[str, str]

    def compose(self) -> tuple[DictConfig, DictConfig]:
        """The cell's whole config (Hydra's runtime set, so `${hydra:runtime.cwd}` resolves to the project) and
        the engine's settings in it; the study's code first on the import path."""
        with initialize_config_dir(config_dir=self.conf_dir, version_base="1.3"):
            full = compose(self.config_name, overrides=self.base_overrides + self.overrides + self.run_overrides,
                           return_hydra_config=True)
        HydraConfig.instance().set_config(full)
        settings = read_settings(full.get("grid"))
        sys.path[:0] = [str(Path(folder).resolve()) for folder in code_folders(settings)] + [self.project_dir]
        return full, settings

    def fingerprint(self, settings: Any) -> dict[str, Any]:
        """The config, code and libraries parts; the code as it is now (a queued job may start after an edit)."""
        return {"config": self.fingerprint_config, "code": code_part(settings, Path(self.project_dir)),
                "libraries": library_versions(settings)}


def cell_config(full: DictConfig) -> dict[str, Any]:
    """The config a task receives: the study's own keys, resolved."""
    return OmegaConf.to_container(OmegaConf.masked_copy(full, [k for k in full if k not in NOT_CELL]), resolve=True)
