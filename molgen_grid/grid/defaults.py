"""What a cell holds where its overrides say nothing: the experiment's value of a key, or its option file's when
the cell chose another option of the key's group; so an override that restates a default names no other cell,
and a key only some options of a swept group have stays out of the cells of the others.
"""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from molgen_grid.errors import InputError
from molgen_grid.grid.config_files import ConfigFiles
from molgen_grid.grid.overrides import ABSENT, OverrideReader


class Defaults:
    def __init__(self, base: DictConfig, choices: dict[str, str], files: ConfigFiles,
                 reader: OverrideReader) -> None:
        self.base = base
        self.choices = choices
        self.files = files
        self.reader = reader
        self._is_default: dict[tuple[str, str, str | None], bool] = {}
        #: A key's value by the option of its group a cell chose (read once, not once per cell).
        self._values: dict[tuple[str, str | None], Any] = {}
        #: Groups the grid being planned sets to several options (see `applies`).
        self.swept: set[str] = set()

    def value_of(self, key: str, choices: dict[str, str]) -> Any:
        """The value `key` has in a cell with these group choices and no override of it (ABSENT: none); the same
        object for every cell that chose the same option (read, never changed)."""
        group, _, rest = key.partition(".")
        chosen = choices[group] if rest and group in choices and choices[group] != self.choices.get(group) else None
        memo = (key, chosen)
        if memo not in self._values:
            if chosen is not None:
                value = OmegaConf.select(self.files.option(group, chosen), rest, default=ABSENT)
            else:
                value = OmegaConf.select(self.base, key, default=ABSENT)
            self._values[memo] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        return self._values[memo]

    def is_default(self, key: str, value: str, choices: dict[str, str]) -> bool:
        memo = (key, value, choices.get(key.partition(".")[0]))
        if memo not in self._is_default:
            default = self.value_of(key, choices)
            typed = self.reader.parser.parse_override(f"{key}={value}").value()
            self._is_default[memo] = default is not ABSENT and default == typed
        return self._is_default[memo]

    def applies(self, key: str, choices: dict[str, str]) -> bool:
        """Whether a key of some options of a group belongs in a cell with these choices. In a grid that sweeps
        the group itself (`decoding=standard,assisted decoding.draft_tokens=5,10`) it is left out of the cells
        whose option lacks it, which then are one cell; set for a single option that lacks it, it names the
        options that have it (the fix: choose one of them, or add it everywhere with `++`)."""
        group = key.partition(".")[0]
        if group not in choices:
            return True
        having = self.reader.options_with(key)
        if having and choices[group] not in having:
            if group in self.swept:
                return False
            raise InputError(f"{key} is a key of {group}={', '.join(having)}, not of {group}={choices[group]}: "
                             f"choose one of those options, or write ++{key}=... to add it to every option")
        return True
