"""A sweep's cells, named and checked from one composed config, never one composition per cell.

Hydra's sweeper hands the launcher each cell as a list of `key=value` strings. Everything the plan needs of a
cell (its name, whether its overrides are legal, the config part of its fingerprint, the resources its option
of the resource group asks for) is derived from those strings, the experiment's base config (composed once) and the option
files it selects (read once each). Composing every cell would cost about 100 ms each; a 10,000-cell status
must answer in about a second, and a cell's own process composes its config when it runs.

One configuration gets one name: override prefixes (`+`, `++`) are dropped and values are spelled one way
(`0.40` is `0.4`, `True` is `true`) before naming, and keys that only say how a cell is run
(`grid.not_identity`: time limits, memory, CPUs) never enter a name or a fingerprint.
"""
from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from molgen_grid.errors import InputError
from molgen_grid.grid.cells import Cell, ValueSpelling, canonical, make_cell, name_matches, parse_cell_name
from molgen_grid.grid.dotted import load
from molgen_grid.grid.fingerprint import digest
from molgen_grid.grid.resources import check_resource
from molgen_grid.grid.settings import read_settings

_ABSENT = object()
#: The grid of a study that has no `experiment` group, and the experiment `--experiment` names by default.
DEFAULT_EXPERIMENT = "default"
#: Key prefixes of overrides that steer Hydra or the engine, not the cell: they never enter a cell's name.
STEERING_PREFIXES = ("hydra.", "hydra/", "grid.")
#: Sections of a config file that are not the cell's config: Hydra's, the engine's, the defaults list.
NOT_CELL_SECTIONS = ("hydra", "grid", "defaults")


def steers_the_engine(key: str) -> bool:
    """The experiment choice and Hydra's or the engine's settings: never part of a cell."""
    return key == "experiment" or key.lstrip("+~").startswith(STEERING_PREFIXES)


def close_match(word: str, choices: Iterable[str]) -> str:
    """`did you mean X? ` when one choice is close to `word`, else nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {close[0]}? " if close else ""


class GridSpec:
    """The experiment's base config and what it takes to turn override lists into named cells."""

    def __init__(self, config_loader: ConfigLoader, config_name: str, experiment: str | None,
                 hydra_overrides: Sequence[str] = (), settings: DictConfig | None = None) -> None:
        self.loader = config_loader
        self.config_name = config_name
        experiments = config_loader.get_group_options("experiment")
        #: Whether the study has named grids (an `experiment` group); without one its grid is `default`.
        self.has_experiments = bool(experiments)
        experiment = experiment or DEFAULT_EXPERIMENT
        if not experiments and experiment != DEFAULT_EXPERIMENT:
            raise InputError(f"unknown experiment {experiment!r}: this study has no experiment group (an "
                             "experiment/ folder of named grids beside its config); leave --experiment out")
        if experiments and experiment not in experiments:
            raise InputError(f"unknown experiment {experiment!r}: {close_match(experiment, experiments)}"
                             f"choose one of {', '.join(experiments)} (conf/experiment/)")
        self.experiment = experiment
        self.hydra_overrides = list(hydra_overrides)
        self.base = config_loader.load_configuration(config_name=config_name, overrides=self.base_overrides,
                                                     run_mode=RunMode.RUN)
        #: The engine's settings (`grid:`, defaults filled in), as the command line left them.
        self.settings = read_settings(settings if settings is not None else self.base.get("grid"))
        self.not_identity: set[str] = set(self.settings.not_identity)
        self.choices: dict[str, str] = {
            k: v for k, v in self.base.hydra.runtime.choices.items() if not k.startswith("hydra/") and v is not None
        }
        self.axes: list[str] = list(self.settings.axes) if self.settings.axes is not None else [
            group for group in self.choices if group != "experiment"]
        self._parser = OverridesParser.create(config_loader=config_loader)
        self._parsed: dict[str, tuple[str, str, bool, bool] | None] = {}
        self._defaults: dict[tuple[str, str, str | None], bool] = {}
        self._options: dict[str, list[str]] = {}
        self._files: dict[str, DictConfig | None] = {}
        self._file_hash: dict[str, str] = {}
        self._files_part: dict[tuple, dict[str, str]] = {}
        self._spelling = ValueSpelling(self._parser)
        self._checker: Callable[[str, Any], str | None] | None = None
        #: Groups the grid being planned sets to several options (see `_applies`).
        self._swept: set[str] = set()

    @property
    def base_overrides(self) -> list[str]:
        """What every cell's composition starts from: Hydra's overrides and the experiment's choice."""
        return self.hydra_overrides + ([f"experiment={self.experiment}"] if self.has_experiments else [])

    # --- the config files -----------------------------------------------------------------------------------

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

    def _file_part(self, path: str) -> str:
        """A hash of one config file as it feeds a cell: parsed (comments and layout do not count), less its
        Hydra and engine sections and the keys that only say how a cell is run."""
        if path not in self._file_hash:
            cfg = self.config_file(path) or OmegaConf.create()
            group = path.split("/")[0] if "/" in path else None
            kept = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k not in NOT_CELL_SECTIONS])
            for key in self.not_identity:
                relative = key.partition(".")[2] if group and key.startswith(group + ".") else key
                parent, _, leaf = relative.rpartition(".")
                node = OmegaConf.select(kept, parent) if parent else kept
                if OmegaConf.is_dict(node) and leaf in node:
                    del node[leaf]
            self._file_hash[path] = digest(OmegaConf.to_yaml(kept))
        return self._file_hash[path]

    def fingerprint_config(self, cell: Cell) -> dict[str, str]:
        """The config part of a cell's fingerprint: each file its config is made of, and its own overrides."""
        choices = tuple(sorted(self.cell_choices(cell).items()))
        if choices not in self._files_part:
            files = [self.config_name, f"experiment/{self.experiment}"] + [
                f"{g}/{o}" for g, o in choices if g != "experiment"]
            self._files_part[choices] = {f"{path}.yaml": self._file_part(path) for path in files}
        return {**self._files_part[choices], "overrides": digest(json.dumps(cell.extra))}

    # --- overrides --------------------------------------------------------------------------------------------

    def _parse(self, override: str) -> tuple[str, str, bool, bool] | None:
        """(key without prefix, value in its one spelling, is it a group choice, did it force-add), validated
        once per distinct override; None for an override that steers Hydra or the engine, not the cell."""
        if override in self._parsed:
            return self._parsed[override]
        parsed = self._parser.parse_override(override)
        key = parsed.key_or_group
        group = key
        if steers_the_engine(parsed.get_key_element()):
            result = None
        elif group in self.choices:
            value = parsed.get_value_element_as_str()
            options = self.group_options(group)
            if value not in options:
                raise InputError(f"unknown option {group}={value}: {close_match(value, options)}"
                                 f"choose one of {', '.join(options)} (conf/{group}/)")
            result = (key, value, True, False)
        else:
            adds = parsed.is_add() or parsed.is_force_add()
            if not adds and not self._key_exists(key):
                raise InputError(f"unknown key {key!r}: {close_match(key, self._known_keys())}"
                                 f"(to add a new key, write +{key}=...)")
            problem = self.check_value(key, parsed.value())
            if problem:
                raise InputError(problem)
            result = (key, canonical(parsed.value(), self._spelling.reads_back), False, adds)
        self._parsed[override] = result
        return result

    def check_base(self) -> None:
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
                raise InputError(f"{problem} (set in the config of experiment {self.experiment})")

        walk(container, "")

    def check_value(self, key: str, value: Any) -> str | None:
        """Whether the value is one the setting takes: the engine's resource keys, then the cell code's
        settings (`grid.check`); the reason when it is not."""
        if self._checker is None:
            self._checker = load(self.settings.check) if self.settings.check else (lambda k, v: None)
        return check_resource(key, value, self.settings.resources) or self._checker(key, value)

    def _key_exists(self, key: str) -> bool:
        """In the base config, or (`group.key`) in some option of the group it starts with."""
        return OmegaConf.select(self.base, key, default=_ABSENT) is not _ABSENT or bool(self.options_with(key))

    def options_with(self, key: str) -> list[str]:
        """The options of the group `key` starts with that have it (a key some options of a group lack)."""
        group, _, rest = key.partition(".")
        if group not in self.choices or not rest:
            return []
        return [o for o in self.group_options(group)
                if OmegaConf.select(self.config_file(f"{group}/{o}") or OmegaConf.create(), rest,
                                    default=_ABSENT) is not _ABSENT]

    def _known_keys(self) -> list[str]:
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

    def _default_of(self, key: str, choices: dict[str, str]) -> Any:
        """The value `key` has in a cell with these group choices and no override of it: from the option file
        of its group when the cell chose another option than the experiment's."""
        group, _, rest = key.partition(".")
        if rest and group in choices and choices[group] != self.choices.get(group):
            value = OmegaConf.select(self.config_file(f"{group}/{choices[group]}") or OmegaConf.create(), rest,
                                     default=_ABSENT)
        else:
            value = OmegaConf.select(self.base, key, default=_ABSENT)
        return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value

    def _is_default(self, key: str, value: str, choices: dict[str, str]) -> bool:
        group = key.partition(".")[0]
        memo = (key, value, choices.get(group))
        if memo not in self._defaults:
            default = self._default_of(key, choices)
            typed = self._parser.parse_override(f"{key}={value}").value()
            self._defaults[memo] = default is not _ABSENT and default == typed
        return self._defaults[memo]

    def _applies(self, key: str, choices: dict[str, str]) -> bool:
        """Whether a key of some options of a group belongs in a cell with these choices. In a grid that sweeps
        the group itself (`decoding=standard,assisted decoding.draft_tokens=5,10`) it is left out of the cells
        whose option lacks it, which then are one cell; set for a single option that lacks it, it names the
        options that have it (the fix: choose one of them, or add it everywhere with `++`)."""
        group = key.partition(".")[0]
        if group not in choices:
            return True
        having = self.options_with(key)
        if having and choices[group] not in having:
            if group in self._swept:
                return False
            raise InputError(f"{key} is a key of {group}={', '.join(having)}, not of {group}={choices[group]}: "
                             f"choose one of those options, or write ++{key}=... to add it to every option")
        return True

    # --- cells ------------------------------------------------------------------------------------------------

    def cell(self, overrides: Sequence[str]) -> Cell:
        """The cell that these overrides select (the experiment's defaults filling the rest)."""
        parsed = [p for p in map(self._parse, overrides) if p is not None]
        choices = dict(self.choices)
        choices.update({k: v for k, v, is_group, _ in parsed if is_group})
        extra: dict[str, str] = {}
        run: dict[str, str] = {}
        added: set[str] = set()
        for key, value, is_group, adds in parsed:
            if key in self.axes:
                continue
            if key in self.not_identity:
                run[key] = value
                continue
            if not adds and not self._applies(key, choices):
                continue
            default = self.choices.get(key) == value if is_group else self._is_default(key, value, choices)
            if default:
                extra.pop(key, None)
                continue
            extra[key] = value
            if adds and self._default_of(key, choices) is _ABSENT:
                added.add(key)
        return make_cell([(a, choices[a]) for a in self.axes], extra, run, frozenset(added))

    @classmethod
    def of_sweep(cls, config_loader: ConfigLoader, sweep_config: DictConfig) -> "GridSpec":
        """The spec of the sweep Hydra composed (its experiment, its Hydra overrides)."""
        return cls(config_loader, sweep_config.hydra.job.config_name,
                   sweep_config.hydra.runtime.choices.get("experiment"),
                   list(sweep_config.hydra.overrides.hydra), sweep_config.get("grid"))

    def validate(self, overrides: Iterable[str]) -> None:
        """Check command-line overrides (sweeps expanded) before Hydra composes anything."""
        for line in overrides:
            (parsed,) = self._parser.parse_overrides([line])
            if steers_the_engine(parsed.get_key_element()):
                continue
            key = parsed.get_key_element()
            values = list(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else [
                parsed.get_value_element_as_str()]
            for value in values:
                self._parse(f"{key}={value}")

    def cells(self, job_overrides: Iterable[Sequence[str]]) -> list[Cell]:
        """Distinct cells in sweep order (two spellings of one cell are one cell)."""
        jobs = [list(overrides) for overrides in job_overrides]
        options: dict[str, set[str]] = {}
        for key, value, is_group, _ in (p for o in jobs for p in map(self._parse, o) if p is not None):
            if is_group:
                options.setdefault(key, set()).add(value)
        self._swept = {group for group, chosen in options.items() if len(chosen) > 1}
        seen: dict[str, Cell] = {}
        for overrides in jobs:
            c = self.cell(overrides)
            seen.setdefault(c.name, c)
        return list(seen.values())

    def resolve_names(self, names: Iterable[str], grid: list[Cell], root: Path | None = None) -> list[Cell]:
        """Cells named on the command line.

        A name is a cell's full name, or a part of it (`kv_cache=static`) that selects every matching cell of
        the grid, as `--status` shows them; a full name outside the grid is rebuilt from its directory's
        overrides.json under `root` when it ran before, else from the name itself.
        """
        by_name = {c.name: c for c in grid}
        out: list[Cell] = []
        for name in names:
            if name in by_name:
                out.append(by_name[name])
                continue
            matches = [c for c in grid if name_matches(name, lambda wanted, c=c: self.settings_of(c, wanted))]
            if matches:
                out.extend(matches)
                continue
            recorded = root / name / "overrides.json" if root is not None and "/" not in name else None
            try:
                overrides = json.loads(recorded.read_text()) if recorded is not None and recorded.is_file() \
                    else parse_cell_name(name)
                c = self.cell(overrides)
            except (ValueError, InputError) as e:
                raise InputError(f"{name!r} is not a cell of this grid ({e}): copy a name from --status") from None
            if c.name != name:
                raise InputError(f"{name!r} matches no cell of this grid: did you mean {c.name!r}?")
            out.append(c)
        return list({c.name: c for c in out}.values())

    def cell_choices(self, cell: Cell) -> dict[str, str]:
        """The option of every group in this cell (its axes' and any other group it chose)."""
        choices = dict(self.choices)
        choices.update({k: v for k, v in cell.axes + cell.extra if k in choices})
        return choices

    def settings_of(self, cell: Cell, keys: Iterable[str]) -> dict[str, str]:
        """The cell's value for each key as a name writes it, the experiment's default where it has none."""
        own = dict(cell.axes + cell.extra)
        out = {}
        for key in keys:
            if key in own:
                out[key] = own[key]
            elif key in self.choices:
                out[key] = self.choices[key]
            else:
                value = self._default_of(key, self.cell_choices(cell))
                out[key] = canonical(None if value is _ABSENT else value, self._spelling.reads_back)
        return out

    def resources(self, cell: Cell) -> dict[str, Any]:
        """Where and how the cell runs: its option of the resource group (`grid.resources`), or this machine."""
        group = self.settings.resources
        return self.group_config(cell, group) if group is not None else {"executor": "local"}

    def group_config(self, cell: Cell, group: str) -> dict[str, Any]:
        """One group's config in this cell (its option file and the cell's overrides of its keys), without
        composing the cell."""
        node = self.config_file(f"{group}/{self.cell_choices(cell)[group]}") or OmegaConf.create()
        prefix = group + "."
        dotlist = [f"{k[len(prefix):]}={v}" for k, v in cell.extra + cell.run if k.startswith(prefix)]
        merged = OmegaConf.merge(node, OmegaConf.from_dotlist(dotlist)) if dotlist else node
        return OmegaConf.to_container(merged, resolve=True)

    def compose(self, cell: Cell) -> DictConfig:
        """The full config of one cell: what the cell's own process does before it runs."""
        return self.loader.load_configuration(
            config_name=self.config_name,
            overrides=self.base_overrides + cell.overrides + cell.run_overrides,
            run_mode=RunMode.RUN,
        )
