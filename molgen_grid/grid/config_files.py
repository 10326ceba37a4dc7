"""A study's config files as a grid reads them: each option file read once, and the config part of a cell's
fingerprint (each file its config is made of, parsed, and its own overrides), never one composition per cell.
"""
from __future__ import annotations

import json
from typing import Any

from hydra.core.config_loader import ConfigLoader
from omegaconf import DictConfig, OmegaConf

from molgen_grid.grid.fingerprint import digest

#: Sections of a config file that are not the cell's config: Hydra's, the engine's, the defaults list.
NOT_CELL_SECTIONS = ("hydra", "grid", "defaults")


class ConfigFiles:
    """The files of one experiment's config tree, each read and hashed at most once."""

    def __init__(self, loader: ConfigLoader, config_name: str, experiment: str, not_identity: set[str]) -> None:
        self.loader = loader
        self.config_name = config_name
        self.experiment = experiment
        self.not_identity = not_identity
        self._options: dict[str, list[str]] = {}
        self._files: dict[str, DictConfig | None] = {}
        self._hashes: dict[str, str] = {}
        self._parts: dict[tuple, dict[str, str]] = {}

    def group_options(self, group: str) -> list[str]:
        if group not in self._options:
            self._options[group] = self.loader.get_group_options(group)
        return self._options[group]

    def config_file(self, path: str) -> DictConfig | None:
        """One config file as written (`group/option` or the primary config's name), read once."""
        if path not in self._files:
            result = self.loader.repository.load_config(path)
            self._files[path] = None if result is None else result.config
        return self._files[path]

    def option(self, group: str, option: str) -> DictConfig:
        """One option's file (empty when it has none)."""
        return self.config_file(f"{group}/{option}") or OmegaConf.create()

    def file_part(self, path: str) -> str:
        """A hash of one config file as it feeds a cell: parsed (comments and layout do not count), less its
        Hydra and engine sections and the keys that only say how a cell is run."""
        if path not in self._hashes:
            cfg = self.config_file(path) or OmegaConf.create()
            group = path.split("/")[0] if "/" in path else None
            kept = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k not in NOT_CELL_SECTIONS])
            for key in self.not_identity:
                relative = key.partition(".")[2] if group and key.startswith(group + ".") else key
                parent, _, leaf = relative.rpartition(".")
                node = OmegaConf.select(kept, parent) if parent else kept
                if OmegaConf.is_dict(node) and leaf in node:
                    del node[leaf]
            self._hashes[path] = digest(OmegaConf.to_yaml(kept))
        return self._hashes[path]

    def fingerprint_config(self, choices: dict[str, str], extra: Any) -> dict[str, str]:
        """The config part of a cell's fingerprint: each file its config is made of (`choices`: its option of
        every group), and its own overrides (`extra`)."""
        key = tuple(sorted(choices.items()))
        if key not in self._parts:
            files = [self.config_name, f"experiment/{self.experiment}"] + [
                f"{g}/{o}" for g, o in key if g != "experiment"]
            self._parts[key] = {f"{path}.yaml": self.file_part(path) for path in files}
        return {**self._parts[key], "overrides": digest(json.dumps(extra))}
