"""A sweep's cells, named and fingerprinted from one composed config, never one composition per cell.

Hydra's sweeper hands the launcher each cell as a list of `key=value` strings. Everything the plan needs of a
cell (its name, whether its overrides are legal, the fingerprint that tells a stale result) is derived from
those strings, the experiment's base config (composed once) and the option files it selects (read once each).
Composing every cell would cost about 100 ms each; a 3,000-cell status must answer in about a second.
"""
from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from molgen_grid.errors import InputError
from molgen_grid.grid.cells import Cell, make_cell, parse_cell_name

_ABSENT = object()
#: Overrides that steer Hydra or the engine, not the cell: they never enter a cell's name.
ENGINE_KEYS = ("hydra.", "hydra/", "grid.")


def steers_the_engine(key: str) -> bool:
    """The experiment choice and Hydra's or the engine's settings: never part of a cell."""
    return key == "experiment" or key.lstrip("+~").startswith(ENGINE_KEYS)


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def code_fingerprint(task: str) -> str:
    """A hash of the source of the package that holds the cell's code: a code change makes results stale."""
    package = task.rsplit(".", 2)[0]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise InputError(f"grid.task {task!r} is not importable: name a function as package.module.function")
    root = Path(spec.origin).parent
    return _digest(*(f"{p.relative_to(root)}:{p.read_bytes().hex()}" for p in sorted(root.rglob("*.py"))))


class GridSpec:
    """The experiment's base config and what it takes to turn override lists into named cells."""

    def __init__(self, config_loader: ConfigLoader, config_name: str, experiment: str,
                 hydra_overrides: Sequence[str] = (), settings: DictConfig | None = None) -> None:
        self.loader = config_loader
        self.config_name = config_name
        experiments = config_loader.get_group_options("experiment")
        if experiment not in experiments:
            raise InputError(f"unknown experiment {experiment!r}: choose one of {', '.join(experiments)} "
                             "(conf/experiment/)")
        self.experiment = experiment
        self.base = config_loader.load_configuration(
            config_name=config_name,
            overrides=list(hydra_overrides) + [f"experiment={experiment}"],
            run_mode=RunMode.RUN,
        )
        #: The engine's settings (`grid:`), as the command line left them.
        self.settings = settings if settings is not None else self.base.grid
        self.axes: list[str] = list(self.settings.axes)
        self.choices: dict[str, str] = {
            k: v for k, v in self.base.hydra.runtime.choices.items() if not k.startswith("hydra/") and v is not None
        }
        self._parser = OverridesParser.create(config_loader=config_loader)
        self._parsed: dict[str, tuple[str, Any, bool]] = {}
        self._defaults: dict[tuple[str, str, str | None], bool] = {}
        self._options: dict[str, list[str]] = {}
        self._file_hash: dict[str, str] = {}
    @functools.cached_property
    def _common(self) -> str:
        """The part of every cell's fingerprint that its overrides do not change."""
        return _digest(
            self._config_text(self.config_name),
            self._config_text(f"experiment/{self.experiment}"),
            code_fingerprint(self.settings.task),
        )

    def _config_text(self, path: str) -> str:
        """A hash of one config file as it feeds a cell: Hydra's and the engine's sections (`hydra:`, `grid:`,
        which hold the grid, its description and baseline) are left out, so editing them stales nothing."""
        if path not in self._file_hash:
            result = self.loader.repository.load_config(path)
            cfg = result.config if result is not None else OmegaConf.create()
            cfg = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k not in ("hydra", "grid", "defaults")])
            self._file_hash[path] = _digest(OmegaConf.to_yaml(cfg))
        return self._file_hash[path]

    def group_options(self, group: str) -> list[str]:
        if group not in self._options:
            self._options[group] = self.loader.get_group_options(group)
        return self._options[group]

    def _parse(self, override: str) -> tuple[str, Any, bool]:
        """(key, value as a string, is it a group choice), validated once per distinct override."""
        if override in self._parsed:
            return self._parsed[override]
        parsed = self._parser.parse_override(override)
        key = parsed.get_key_element()
        value = parsed.get_value_element_as_str()
        group = parsed.key_or_group
        if group in self.choices:
            options = self.group_options(group)
            if value not in options:
                raise InputError(
                    f"unknown option {group}={value}: choose one of {', '.join(options)} (conf/{group}/)"
                )
            result = (key, value, True)
        else:
            if not key.startswith("+") and not self._key_exists(key):
                close = difflib.get_close_matches(key, self._known_keys(), n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise InputError(f"unknown key {key!r}: {hint}(to add a new key, write +{key}=...)")
            result = (key, value, False)
        self._parsed[override] = result
        return result

    def _key_exists(self, key: str) -> bool:
        """In the base config, or (`gpu.mem_gb`) in some option of the group it starts with."""
        if OmegaConf.select(self.base, key, default=_ABSENT) is not _ABSENT:
            return True
        group, _, rest = key.partition(".")
        if group not in self.choices or not rest:
            return False
        for option in self.group_options(group):
            result = self.loader.repository.load_config(f"{group}/{option}")
            if result is not None and OmegaConf.select(result.config, rest, default=_ABSENT) is not _ABSENT:
                return True
        return False

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
        of its group when the cell chose another option than the experiment (`gpu.time_min` under gpu=h100)."""
        bare = key.lstrip("+~")
        group, _, rest = bare.partition(".")
        if rest and group in choices and choices[group] != self.choices.get(group):
            result = self.loader.repository.load_config(f"{group}/{choices[group]}")
            value = _ABSENT if result is None else OmegaConf.select(result.config, rest, default=_ABSENT)
        else:
            value = OmegaConf.select(self.base, bare, default=_ABSENT)
        return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value

    def _is_default(self, key: str, value: str, choices: dict[str, str]) -> bool:
        group = key.lstrip("+~").partition(".")[0]
        memo = (key, value, choices.get(group))
        if memo not in self._defaults:
            default = self._default_of(key, choices)
            typed = self._parser.parse_override(f"{key}={value}").value()
            self._defaults[memo] = default is not _ABSENT and default == typed
        return self._defaults[memo]

    def cell(self, overrides: Sequence[str]) -> Cell:
        """The cell that these overrides select (the experiment's defaults filling the rest)."""
        parsed = [self._parse(o) for o in overrides]
        parsed = [(k, v, g) for k, v, g in parsed if not steers_the_engine(k)]
        choices = dict(self.choices)
        choices.update({k: v for k, v, is_group in parsed if is_group})
        extra: dict[str, str] = {}
        for key, value, is_group in parsed:
            if key in self.axes:
                continue
            default = self.choices.get(key) == value if is_group else self._is_default(key, value, choices)
            if default:
                extra.pop(key, None)
            else:
                extra[key] = value
        return make_cell([(a, choices[a]) for a in self.axes], extra)

    @classmethod
    def of_sweep(cls, config_loader: ConfigLoader, sweep_config: DictConfig) -> "GridSpec":
        """The spec of the sweep Hydra composed (its experiment, its Hydra overrides)."""
        return cls(config_loader, sweep_config.hydra.job.config_name,
                   sweep_config.hydra.runtime.choices.get("experiment", "default"),
                   list(sweep_config.hydra.overrides.hydra), sweep_config.grid)

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
        seen: dict[str, Cell] = {}
        for overrides in job_overrides:
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
            wanted = dict(part.partition("=")[::2] for part in name.split(","))
            matches = [c for c in grid if self.settings_of(c, wanted) == wanted]
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
                value = OmegaConf.select(self.base, key, default=None)
                out[key] = "null" if value is None else str(value)
        return out

    def spec_hash(self, cell: Cell) -> str:
        """What a result depends on: overrides, the option files selected, the primary config, the code."""
        choices = dict(self.choices)
        for key, value in cell.axes + cell.extra:
            if key in choices:
                choices[key] = value
        files = [self._config_text(f"{g}/{o}") for g, o in sorted(choices.items()) if g != "experiment"]
        return _digest(self._common, json.dumps(cell.extra), *files)

    def compose(self, cell: Cell) -> DictConfig:
        """The full config of one cell; only for cells that are about to run."""
        return self.loader.load_configuration(
            config_name=self.config_name,
            overrides=[f"experiment={self.experiment}"] + cell.overrides,
            run_mode=RunMode.RUN,
        )
