"""A sweep's override strings read as a grid reads them: each validated once (an unknown option or key is one
line with a suggestion, a resource value the engine cannot use is refused) and spelled one way (`0.40` is `0.4`,
`True` is `true`, prefixes dropped), so one configuration gets one name.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, Iterable

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from molgen_grid.errors import InputError
from molgen_grid.grid.cells import ValueSpelling, canonical
from molgen_grid.grid.config_files import NOT_CELL_SECTIONS, ConfigFiles
from molgen_grid.grid.dotted import load
from molgen_grid.grid.resources import check_resource

#: Key prefixes of overrides that steer Hydra or the engine, not the cell: they never enter a cell's name.
STEERING_PREFIXES = ("hydra.", "hydra/", "grid.")
#: What an option file or the base config holds nothing at.
ABSENT = object()
#: One override as a grid reads it: key without prefix, value in its one spelling, whether it chooses a group's
#: option, whether it force-adds a key.
Parsed = tuple[str, str, bool, bool]


def steers_the_engine(key: str) -> bool:
    """The experiment choice and Hydra's or the engine's settings: never part of a cell."""
    return key == "experiment" or key.lstrip("+~").startswith(STEERING_PREFIXES)


def close_match(word: str, choices: Iterable[str]) -> str:
    """`did you mean X? ` when one choice is close to `word`, else nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {close[0]}? " if close else ""


class OverrideReader:
    """Validates and normalises overrides against one experiment's base config and option files."""

    def __init__(self, loader: ConfigLoader, base: DictConfig, choices: dict[str, str], files: ConfigFiles,
                 settings: DictConfig) -> None:
        self.base = base
        self.choices = choices
        self.files = files
        self.settings = settings
        self.parser = OverridesParser.create(config_loader=loader)
        self.spelling = ValueSpelling(self.parser)
        self._parsed: dict[str, Parsed | None] = {}
        self._checker: Callable[[str, Any], str | None] | None = None

    def parse(self, override: str) -> Parsed | None:
        """The override as a grid reads it, validated once per distinct text; None for one that steers Hydra or
        the engine, not the cell."""
        if override in self._parsed:
            return self._parsed[override]
        parsed = self.parser.parse_override(override)
        key = parsed.key_or_group
        if key not in self.choices and key.replace(".", "/") in self.choices:  # a nested group as a name spells it
            key = key.replace(".", "/")
        if steers_the_engine(parsed.get_key_element()):
            result = None
        elif key in self.choices:
            value = parsed.get_value_element_as_str()
            options = self.files.group_options(key)
            if value not in options:
                raise InputError(f"unknown option {key}={value}: {close_match(value, options)}"
                                 f"choose one of {', '.join(options)} (conf/{key}/)")
            result = (key, value, True, False)
        else:
            adds = parsed.is_add() or parsed.is_force_add()
            if not adds and not self.key_exists(key):
                raise InputError(f"unknown key {key!r}: {close_match(key, self.known_keys())}"
                                 f"(to add a new key, write +{key}=...)")
            problem = self.check_value(key, parsed.value())
            if problem:
                raise InputError(problem)
            result = (key, canonical(parsed.value(), self.spelling.reads_back), False, adds)
        self._parsed[override] = result
        return result

    def validate(self, overrides: Iterable[str]) -> None:
        """Check command-line overrides (sweeps expanded) before Hydra composes anything."""
        for line in overrides:
            (parsed,) = self.parser.parse_overrides([line])
            if steers_the_engine(parsed.get_key_element()):
                continue
            key = parsed.get_key_element()
            values = list(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else [
                parsed.get_value_element_as_str()]
            for value in values:
                self.parse(f"{key}={value}")

    def check_base(self, experiment: str) -> None:
        """The experiment's own values (its file, the primary config, the default options), checked once."""
        container = OmegaConf.to_container(OmegaConf.masked_copy(self.base, [k for k in self.base
                                                                             if k not in NOT_CELL_SECTIONS]))

        def walk(node: Any, prefix: str) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(v, f"{prefix}{k}.")
                return
            problem = self.check_value(prefix[:-1], node)
            if problem:
                raise InputError(f"{problem} (set in the config of experiment {experiment})")

        walk(container, "")

    def check_value(self, key: str, value: Any) -> str | None:
        """Whether the value is one the setting takes: the engine's resource keys, then the cell code's
        settings (`grid.check`); the reason when it is not."""
        if self._checker is None:
            self._checker = load(self.settings.check) if self.settings.check else (lambda k, v: None)
        return check_resource(key, value, self.settings.resources) or self._checker(key, value)

    def key_exists(self, key: str) -> bool:
        """In the base config, or (`group.key`) in some option of the group it starts with."""
        return OmegaConf.select(self.base, key, default=ABSENT) is not ABSENT or bool(self.options_with(key))

    def options_with(self, key: str) -> list[str]:
        """The options of the group `key` starts with that have it (a key some options of a group lack)."""
        group, _, rest = key.partition(".")
        if group not in self.choices or not rest:
            return []
        return [o for o in self.files.group_options(group)
                if OmegaConf.select(self.files.option(group, o), rest, default=ABSENT) is not ABSENT]

    def known_keys(self) -> list[str]:
        container = OmegaConf.to_container(self.base, resolve=False)
        keys: list[str] = []

        def walk(node: Any, prefix: str) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    if k != "hydra":
                        keys.append(prefix + str(k))
                        walk(v, prefix + str(k) + ".")

        walk(container, "")
        return keys
