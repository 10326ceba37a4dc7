"""An app's jobs composed once per distinct option set, never once per job, to check, plan or submit them.

A job's overrides are of two kinds, told apart as Hydra tells them (defaults_list.Overrides): a group's option or
a Hydra key, which changes what the defaults list composes, and a value, which Hydra applies to the composed
config. Jobs that choose the same options share one composition (Hydra's own, so typed configs convert as they
do in the job); each distinct value override is applied once, alone, to a copy of it, and what it changed is kept
key by key (config_keys.py). A job's config part is then its option set's keys with its values' changes laid over
them in order: the keys its own process records when it composes itself (task/hydra_app.py). A value override
that cannot be applied alone (one that needs another of the job's) leaves that job to a composition of its own.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from molgen_grid.grid.app.jobs import config_part

Options = tuple[str, ...]
#: What one value override does to its option set's keys: the keys it removes, and those it sets.
Change = tuple[frozenset[str], dict[str, str]]


class OptionSets:
    """The compositions of one sweep's option sets, and each distinct override parsed and applied once."""

    def __init__(self, loader: Any, master: DictConfig, resources: str | None) -> None:
        self.loader = loader
        self.master = master
        self.resources = resources
        self.parser = OverridesParser.create(config_loader=loader)
        self._parsed: dict[str, Override] = {}
        self._shapes: dict[str, bool] = {}
        self._bases: dict[Options, DictConfig] = {}
        self._tasks: dict[Options, DictConfig] = {}
        self._keys: dict[Options, dict[str, str]] = {}
        self._changes: dict[tuple[Options, str], Change | None] = {}
        self._options: dict[tuple[Options, str, tuple[str, ...]], Any] = {}

    def parse_override(self, line: str) -> Override:
        """Hydra's reading of one override, parsed once however many jobs hold it (cells.cell_of asks this)."""
        if line not in self._parsed:
            self._parsed[line] = self.parser.parse_override(line)
        return self._parsed[line]

    def split(self, overrides: Sequence[str]) -> tuple[Options, list[str]]:
        """The job's option set (the overrides that shape its defaults list), and its value overrides, in order."""
        options, values = [], []
        for line in overrides:
            (options if self.shapes(line) else values).append(line)
        return tuple(options), values

    def shapes(self, line: str) -> bool:
        """Whether an override shapes the defaults list (a group's option, a Hydra key), asked once per line."""
        if line not in self._shapes:
            parsed = self.parse_override(line)
            self._shapes[line] = parsed.is_hydra_override() or parsed.package is not None or (
                not isinstance(parsed.value(), dict) and self.loader.repository.group_exists(parsed.key_or_group))
        return self._shapes[line]

    def base(self, options: Options) -> DictConfig:
        """The option set's config, Hydra's section included, composed once (Hydra raises a bad option here)."""
        if options not in self._bases:
            self._bases[options] = self.loader.load_sweep_config(self.master, list(options))
        return self._bases[options]

    def keys(self, options: Options) -> dict[str, str]:
        if options not in self._keys:
            base = self.base(options)
            task = copy.deepcopy(base)  # its own nodes: a copy of task_config's would drag Hydra's section along
            with read_write(task), open_dict(task):
                task.pop("hydra")
            self._tasks[options] = task
            self._keys[options] = config_part(base, self.resources)
        return self._keys[options]

    def change(self, options: Options, line: str) -> Change | None:
        """What one value override changes in the option set's keys, applied to a copy of its config as Hydra
        applies it (None when it cannot be applied alone)."""
        if (options, line) not in self._changes:
            before = self.keys(options)
            cfg = copy.deepcopy(self._tasks[options])
            try:
                self.loader._apply_overrides_to_config([self.parse_override(line)], cfg)
            except (HydraException, OmegaConfBaseException):
                self._changes[options, line] = None
            else:
                after = config_part(cfg, self.resources)
                self._changes[options, line] = (frozenset(before.keys() - after.keys()),
                                                {k: v for k, v in after.items() if before.get(k) != v})
        return self._changes[options, line]

    def config_part(self, overrides: Sequence[str]) -> dict[str, str] | None:
        """The job's config part as its process will record it, or None when only its own composition tells."""
        options, values = self.split(overrides)
        keys = dict(self.keys(options))
        for line in values:
            change = self.change(options, line)
            if change is None:
                return None
            removed, changed = change
            for key in removed:
                keys.pop(key, None)
            keys.update(changed)
        return keys

    def check(self, overrides: Sequence[str]) -> None:
        """Raise what Hydra raises for a job that does not compose: its option set composed once, each value
        override applied once; a job whose values apply only together is composed whole."""
        options, values = self.split(overrides)
        self.keys(options)
        if any(self.change(options, line) is None for line in values):
            self.loader.load_sweep_config(self.master, list(overrides))

    def option(self, overrides: Sequence[str], group: str) -> Any:
        """The job's option of a config group (its resource group), as a plain container: its option set's, with
        the job's value overrides that reach into the group (`where.mem_gb=64`) applied together to a copy, once
        per distinct set of them; None when they cannot be applied without the rest of the job (then only its
        composition tells)."""
        options, values = self.split(overrides)
        top = group.split(".")[0]
        own = tuple(v for v in values if self.parse_override(v).key_or_group.split(".")[0] == top)
        memo = (options, group, own)
        if memo not in self._options:
            self._options[memo] = self._option(options, group, own)
        return self._options[memo]

    def _option(self, options: Options, group: str, own: tuple[str, ...]) -> Any:
        cfg = self.base(options)
        if own:
            cfg = copy.deepcopy(cfg)
            try:
                self.loader._apply_overrides_to_config([self.parse_override(line) for line in own], cfg)
            except (HydraException, OmegaConfBaseException):
                return None
        option = OmegaConf.select(cfg, group)
        return OmegaConf.to_container(option, resolve=True) if OmegaConf.is_dict(option) else {}
