"""The config part of a cell's fingerprint, taken the one way wherever it is taken: by the plan, which names every
cell without composing one (spec.py), and by the cell's own process, which takes it again from the files as they
are when it runs (a queued job may start after an edit) so that its summary records what it ran.

Both build it from the same inputs: the experiment's config files (config_files.py), its groups (those of Hydra's
defaults list, which Hydra copies into the base config's `hydra.runtime.choices`), the keys that only say how a
cell runs, and Hydra's reading of a value. The cell's process therefore needs no second composition of the
experiment's base config, nor the rest of a GridSpec (0.15 of a light cell's 0.72 CPU-s).
"""
from __future__ import annotations

from typing import Collection

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser

from molgen_grid.grid.cells import Cell, ValueSpelling
from molgen_grid.grid.config_files import ConfigFiles
from molgen_grid.grid.config_keys import flat_keys, merge_keys, without


class ConfigPart:
    """A cell's config, key by key (its options' files merged as Hydra merges them, then its own overrides)."""

    def __init__(self, files: ConfigFiles, groups: Collection[str], spelling: ValueSpelling) -> None:
        self.files, self.groups, self.spelling = files, groups, spelling
        self._override_keys: dict[tuple[str, str], dict[str, str]] = {}

    @classmethod
    def in_cell(cls, loader: ConfigLoader, config_name: str, base_overrides: list[str],
                not_identity: set[str]) -> "ConfigPart":
        """As the plan builds it, from the files alone: the groups from the experiment's defaults list."""
        files = ConfigFiles(loader, config_name, base_overrides, not_identity)
        return cls(files, files.choices, ValueSpelling(OverridesParser.create(config_loader=loader)))

    def __call__(self, cell: Cell) -> dict[str, str]:
        keys = dict(self.files.config_keys({k: v for k, v in cell.axes + cell.extra if k in self.groups}))
        for key, value in cell.extra:
            if key not in self.groups:
                merge_keys(keys, self.override_keys(key, value))
        return keys

    def override_keys(self, key: str, value: str) -> dict[str, str]:
        """The flat keys one override of a cell's own sets (none of those that only say how a cell runs), read
        once per distinct override: thousands of cells share each."""
        memo = (key, value)
        if memo not in self._override_keys:
            self._override_keys[memo] = without(flat_keys(self.spelling.value_of(value), key),
                                                self.files.not_identity)
        return self._override_keys[memo]
