"""A study's config files as a grid reads them: each file read once, and the config a cell would compose, key by
key (config_keys.py), merged from the files its defaults list names, never one composition per cell.

The experiment's defaults list (Hydra's own, computed once) gives every file's place and package. A cell that
chooses other options has the same list with those options in their groups' places; only where an option has a
defaults list of its own (nested groups), whose entries then depend on the choice, Hydra computes the list again,
once per distinct set of choices. Every file and every defaults list is read through one of Hydra's caching
repositories, made as Hydra makes its own for a composition (with the search path the primary config sets), so
each YAML file is parsed once, not once per list and again for its keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

from hydra.core.config_loader import ConfigLoader
from hydra.core.default_element import ResultDefault
from hydra._internal.config_repository import CachingConfigRepository
from hydra._internal.defaults_list import DefaultsList, create_defaults_list
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.config_source import ConfigResult
from omegaconf import DictConfig, OmegaConf

from molgen_grid.grid.config_keys import NOT_CELL_SECTIONS, flat_keys, merge_tree, without

__all__ = ["ConfigFiles", "NOT_CELL_SECTIONS", "group_options"]


def group_options(loader: ConfigLoader, group: str) -> list[str]:
    """A group's options, as `loader.get_group_options(group)` lists them, from the loader's own repository:
    Hydra's call deep-copies the whole repository each time (about 8 ms), and a plan asks for several groups."""
    return loader.repository.get_group_options(group, ObjectType.CONFIG)


def _group(default: ResultDefault) -> str:
    return (default.config_path or "").rpartition("/")[0]


def _is_cells(default: ResultDefault) -> bool:
    """Whether a defaults-list entry feeds the cell's config (Hydra's own configs do not)."""
    path = default.config_path
    return path is not None and not path.startswith("hydra/") and path != "hydra/config"


@dataclass(frozen=True)
class FileKeys:
    keys: dict[str, str]
    #: Every key under which one of `keys` sits (`a` and `a.b` for `a.b.c`).
    under: set[str]


class ConfigFiles:
    """The files of one experiment's config tree, each read at most once."""

    def __init__(self, loader: ConfigLoader, config_name: str, base_overrides: list[str],
                 not_identity: set[str]) -> None:
        self.loader = loader
        self.config_name = config_name
        self.base_overrides = base_overrides
        self.not_identity = not_identity
        self.parser = OverridesParser.create()  # one parser for every distinct set of choices
        self._options: dict[str, list[str]] = {}
        self._results: dict[str, ConfigResult | None] = {}
        self._trees: dict[tuple[str, str | None], dict] = {}
        self._defaults: dict[tuple, list[ResultDefault]] = {}
        self._keys: dict[tuple, dict[str, str]] = {}
        self._file_keys: dict[tuple[str, str | None], FileKeys] = {}

    @cached_property
    def repository(self) -> CachingConfigRepository:
        """The files as the experiment's composition reads them, each parsed once for every list and tree."""
        return self.loader._parse_overrides_and_create_caching_repo(self.config_name, self.base_overrides)[1]

    def group_options(self, group: str) -> list[str]:
        if group not in self._options:
            self._options[group] = group_options(self.loader, group)
        return self._options[group]

    def result(self, path: str) -> ConfigResult | None:
        """One config file as Hydra loads it (`group/option` or the primary config's name), read once."""
        if path not in self._results:
            self._results[path] = self.repository.load_config(path)
        return self._results[path]

    def config_file(self, path: str) -> DictConfig | None:
        """One config file as written."""
        result = self.result(path)
        return None if result is None else result.config

    def option(self, group: str, option: str) -> DictConfig:
        """One option's file (empty when it has none)."""
        return self.config_file(f"{group}/{option}") or OmegaConf.create()

    def defaults(self, swapped: Mapping[str, str] = {}) -> list[ResultDefault]:
        """Hydra's defaults list of the experiment with these groups' options swapped (the cell's entries),
        computed once each."""
        key = tuple(sorted(swapped.items()))
        if key not in self._defaults:
            listed = self.defaults_list(key) if key else self.base_list
            self._defaults[key] = [d for d in listed.defaults if _is_cells(d)]
        return self._defaults[key]

    def defaults_list(self, swapped: tuple[tuple[str, str], ...]) -> DefaultsList:
        """Hydra's own defaults list, as the composition of the experiment with these options makes it."""
        overrides = self.base_overrides + [f"{group}={option}" for group, option in swapped]
        return create_defaults_list(self.repository, self.config_name, self.parser.parse_overrides(overrides),
                                    prepend_hydra=True, skip_missing=False)

    @cached_property
    def base_list(self) -> DefaultsList:
        """The experiment's own list (its entries, and the choices Hydra records): read by every plan and cell."""
        return self.defaults_list(())

    @cached_property
    def choices(self) -> dict[str, str]:
        """The option of each of the experiment's groups as its composed config's `hydra.runtime.choices` holds
        them (Hydra copies its defaults list's known choices there), less Hydra's own groups and the unset."""
        return {k: v for k, v in self.base_list.overrides.known_choices.items()
                if not k.startswith("hydra/") and v is not None}

    def cell_defaults(self, chosen: Mapping[str, str]) -> list[ResultDefault]:
        """The defaults list of a cell that chose these options (its own group choices; the rest are the
        experiment's): the experiment's list with them in place, or Hydra's own answer where an option, old or
        new, has a defaults list of its own (nested groups, which follow their parent's option)."""
        base = self.defaults()
        paths, parents = self.base_places
        swapped = {g: o for g, o in chosen.items() if paths.get(g) != f"{g}/{o}"}
        if not swapped:
            return base
        nested = any(g not in paths or self.has_defaults(f"{g}/{o}") or paths[g] in parents
                     for g, o in swapped.items())
        if nested:
            return self.defaults(chosen)
        return [ResultDefault(config_path=f"{_group(d)}/{swapped[_group(d)]}", parent=d.parent, package=d.package,
                              is_self=d.is_self)
                if not d.primary and _group(d) in swapped else d for d in base]

    @cached_property
    def base_places(self) -> tuple[dict[str, str | None], set[str | None]]:
        """The experiment's file of each group, and the files whose own defaults lists name others (asked per
        distinct set of choices: thousands in a grid)."""
        base = self.defaults()
        return {_group(d): d.config_path for d in base if not d.primary}, {d.parent for d in base}

    def has_defaults(self, path: str) -> bool:
        result = self.result(path)
        return bool(result is not None and result.defaults_list)

    def tree(self, default: ResultDefault) -> dict:
        """One entry's file as a plain config placed at its package (its own defaults list left out)."""
        key = (default.config_path, default.package)
        if key not in self._trees:
            result = self.result(default.config_path)
            content = {} if result is None else OmegaConf.to_container(result.config, resolve=False)
            content.pop("defaults", None)
            for part in reversed(default.package.split(".") if default.package else []):
                content = {part: content}
            self._trees[key] = content
        return self._trees[key]

    def file_keys(self, default: ResultDefault) -> FileKeys:
        """One entry's keys, and the keys its keys sit under (a merge that turns one into the other needs the
        tree)."""
        key = (default.config_path, default.package)
        if key not in self._file_keys:
            keys = without(flat_keys(self.tree(default)), (*NOT_CELL_SECTIONS, *self.not_identity))
            under = {k.rsplit(".", i)[0] for k in keys for i in range(1, k.count(".") + 1)}
            self._file_keys[key] = FileKeys(keys, under)
        return self._file_keys[key]

    def config_keys(self, chosen: Mapping[str, str]) -> dict[str, str]:
        """The config a cell that chose these options composes before its own overrides, key by key, less
        Hydra's and the engine's sections and the keys that only say how a cell runs: each file's keys laid over
        the last's, or, where one file has a value at a key under which another has keys, the files merged as
        trees (thousands of distinct sets of choices in a grid: the plain way costs microseconds)."""
        key = tuple(sorted(chosen.items()))
        if key not in self._keys:
            defaults = self.cell_defaults(chosen)
            files = [self.file_keys(d) for d in defaults]
            merged: dict[str, str] = {}
            for file in files:
                merged.update(file.keys)
            under = set().union(*(f.under for f in files))
            if any(k in under for k in merged):
                tree: dict[str, Any] = {}
                for default in defaults:
                    merge_tree(tree, self.tree(default))
                merged = without(flat_keys(tree), (*NOT_CELL_SECTIONS, *self.not_identity))
            self._keys[key] = merged
        return self._keys[key]
