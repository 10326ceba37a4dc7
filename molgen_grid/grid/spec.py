"""A sweep's cells, named and checked from one composed config, never one composition per cell.

Hydra's sweeper hands the launcher each cell as a list of `key=value` strings. Everything the plan needs of a
cell (its name, whether its overrides are legal, the config part of its fingerprint, the resources its option
of the resource group asks for) is derived from those strings, the experiment's base config (composed once) and
the option files it selects (read once each). Composing every cell would cost about 100 ms each; a 10,000-cell
status must answer in about a second, and a cell's own process composes its config when it runs.

GridSpec ties the jobs together: the config files (config_files.py), the overrides (overrides.py), the values a
cell holds where it says nothing (defaults.py), the cells' names (naming.py); it reads their resources (forced.py:
`--force`).
One configuration gets one name, and keys that only say how a cell is run (`grid.not_identity`: time limits,
memory, CPUs) never enter a name or a fingerprint.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from molgen_grid.errors import InputError
from molgen_grid.grid.cells import Cell, canonical
from molgen_grid.grid.config_files import ConfigFiles, group_options
from molgen_grid.grid.config_part import ConfigPart
from molgen_grid.grid.defaults import Defaults
from molgen_grid.grid.naming import CellNamer
from molgen_grid.grid.overrides import ABSENT, OverrideReader, close_match, steers_the_engine
from molgen_grid.grid.resources import LOCAL, executor_of
from molgen_grid.grid.settings import read_settings

#: The grid of a study that has no `experiment` group, and the experiment `--experiment` names by default.
DEFAULT_EXPERIMENT = "default"


class GridSpec:
    """The experiment's base config and what it takes to turn override lists into named cells."""

    def __init__(self, config_loader: ConfigLoader, config_name: str, experiment: str | None,
                 hydra_overrides: Sequence[str] = (), settings: DictConfig | None = None,
                 base: DictConfig | None = None) -> None:
        self.loader = config_loader
        self.config_name = config_name
        if experiment is not None:
            check_experiment(config_loader, experiment)
        self.experiment_override = experiment_override(config_loader, config_name, experiment) if experiment else None
        self.experiment = experiment or DEFAULT_EXPERIMENT
        self.hydra_overrides = list(hydra_overrides)
        #: The experiment's config with no cell's override: `base` where the caller has it composed already.
        self.base = base if base is not None else config_loader.load_configuration(
            config_name=config_name, overrides=self.base_overrides, run_mode=RunMode.RUN)
        #: The engine's settings (`grid:`, defaults filled in), as the command line left them.
        self.settings = read_settings(settings if settings is not None else self.base.get("grid"))
        self.not_identity: set[str] = set(self.settings.not_identity)
        #: `grid.resources`, read once: an OmegaConf lookup costs more than the rest of a cell's resources.
        self.resource_group: str | None = self.settings.resources
        self.choices: dict[str, str] = {
            k: v for k, v in self.base.hydra.runtime.choices.items() if not k.startswith("hydra/") and v is not None
        }
        self.axes: list[str] = list(self.settings.axes) if self.settings.axes is not None else [
            group for group in self.choices if group != "experiment" and not self.is_nested(group)]
        self.axis_set = set(self.axes)
        self.files = ConfigFiles(config_loader, config_name, self.base_overrides, self.not_identity)
        self.overrides = OverrideReader(config_loader, self.base, self.choices, self.files, self.settings)
        self.defaults = Defaults(self.base, self.choices, self.files, self.overrides)
        #: The config part of a cell's fingerprint, as the cell's own process takes it again (config_part.py).
        self.config_part = ConfigPart(self.files, self.choices, self.overrides.spelling)
        #: A group's config by its option and the cell's overrides of its keys: a 10,000-cell grid has a few.
        self._group_configs: dict[tuple[str, str, tuple[str, ...]], dict[str, Any]] = {}
        self.namer = CellNamer(self)

    def is_nested(self, group: str) -> bool:
        """A group an option of another group chooses (`db/engine`, from `db/mysql.yaml`'s own defaults): it
        follows that option, so it is no axis of its own unless the grid's `axes` names it."""
        parent = group.rpartition("/")[0]
        return parent in self.choices

    def option_of(self, group: str, choices: dict[str, str]) -> str | None:
        """The option a group has where a cell does not choose one: the experiment's, or for a nested group the
        one its parent's option (as `choices` has it) chooses."""
        if not self.is_nested(group):
            return self.choices.get(group)
        others = {g: o for g, o in choices.items() if g != group and o != self.choices.get(g)}
        return next((d.config_path.rpartition("/")[2] for d in self.files.cell_defaults(others)
                     if d.config_path.rpartition("/")[0] == group), None)

    @property
    def base_overrides(self) -> list[str]:
        """What every cell's composition starts from: Hydra's overrides and the experiment's choice."""
        return self.hydra_overrides + ([self.experiment_override] if self.experiment_override else [])

    @classmethod
    def of_sweep(cls, config_loader: ConfigLoader, sweep_config: DictConfig) -> "GridSpec":
        """The spec of the sweep Hydra composed (its experiment, its Hydra overrides); the sweep's own config is
        the base where it is composed alike (`composed_as_base`)."""
        return cls(config_loader, sweep_config.hydra.job.config_name,
                   sweep_config.hydra.runtime.choices.get("experiment"),
                   list(sweep_config.hydra.overrides.hydra), sweep_config.get("grid"),
                   sweep_config if composed_as_base(sweep_config) else None)

    def cell(self, overrides: Sequence[str]) -> Cell:
        """The cell that these overrides select (the experiment's defaults filling the rest): naming.py."""
        return self.namer.cell(overrides)

    def cells(self, job_overrides: Iterable[Sequence[str]],
              chosen: dict[str, set[str]] | None = None) -> list[Cell]:
        """Distinct cells in sweep order (two spellings of one cell are one cell): naming.py."""
        return self.namer.cells(job_overrides, chosen)

    def cell_choices(self, cell: Cell) -> dict[str, str]:
        """The option of every group in this cell (its axes' and any other group it chose)."""
        choices = dict(self.choices)
        choices.update({k: v for k, v in cell.axes + cell.extra if k in choices})
        return choices

    def option_in(self, cell: Cell, group: str) -> str:
        """`cell_choices(cell)[group]` without a dict of every group: a plan asks it of every cell."""
        for key, value in reversed(cell.axes + cell.extra):
            if key == group:
                return value
        return self.choices[group]

    def settings_of(self, cell: Cell, keys: Iterable[str]) -> dict[str, str]:
        """The cell's value for each key as a name writes it, the experiment's default where it has none."""
        own = dict(cell.axes + cell.extra)
        out = {}
        for named in keys:
            key = named.replace(".", "/") if named.replace(".", "/") in self.choices else named
            if key in own:
                out[named] = own[key]
            elif key in self.choices:
                out[named] = self.option_of(key, self.cell_choices(cell))
            else:
                value = self.defaults.value_of(key, self.cell_choices(cell))
                out[named] = canonical(None if value is ABSENT else value, self.overrides.spelling.reads_back)
        return out

    def resources(self, cell: Cell) -> dict[str, Any]:
        """Where and how the cell runs: its option of the resource group (`grid.resources`), or this machine."""
        group = self.resource_group
        return self.group_config(cell, group) if group is not None else {"executor": LOCAL}

    def executors_named(self, chosen: dict[str, set[str]]) -> set[str]:
        """The executors that a sweep's options of the resource group name (the experiment's option and each one its
        jobs choose: `namer.chosen`), known before any cell is named. A cell's override of its option's `executor`
        key is not seen here: its executor is found when its resources are read."""
        group = self.resource_group
        if group is None:
            return {LOCAL}
        own = {self.choices[group]} if group in self.choices else set()
        return {executor_of(self.files.option(group, option)) for option in chosen.get(group, set()) | own}

    def group_config(self, cell: Cell, group: str) -> dict[str, Any]:
        """One group's config in this cell (its option file and the cell's overrides of its keys), without
        composing the cell), read once per distinct option and overrides: thousands of cells share each, and a
        status or dry run asks every cell's. A copy, so a caller's change stays its own."""
        option = self.option_in(cell, group)
        prefix = group + "."
        dotlist = tuple(f"{k[len(prefix):]}={v}" for k, v in cell.extra + cell.run if k.startswith(prefix))
        memo = (group, option, dotlist)
        if memo not in self._group_configs:
            node = self.files.option(group, option)
            merged = OmegaConf.merge(node, OmegaConf.from_dotlist(list(dotlist))) if dotlist else node
            self._group_configs[memo] = OmegaConf.to_container(merged, resolve=True)
        return dict(self._group_configs[memo])  # its callers build new dicts from it, never change nested ones

    def compose(self, cell: Cell) -> DictConfig:
        """The full config of one cell: what the cell's own process does before it runs."""
        return self.loader.load_configuration(config_name=self.config_name,
                                              overrides=self.base_overrides + cell.overrides + cell.run_overrides,
                                              run_mode=RunMode.RUN)


def composed_as_base(sweep_config: DictConfig) -> bool:
    """Whether Hydra composed the sweep's config as the base of its cells is composed: from the same overrides
    (Hydra's, the experiment's selection) with the sweeps left out, as a multirun's composition leaves them, and
    the engine's settings, which set only the `grid:` section that the plan reads apart; and no group left
    mandatory (`???`, which only a multirun skips). A sweep that sets a cell's key or group to one value is
    composed again without it (100 ms)."""
    if any(v in (None, "???") for k, v in sweep_config.hydra.runtime.choices.items() if not k.startswith("hydra/")):
        return False
    task = list(sweep_config.hydra.overrides.task)
    try:
        parsed = OverridesParser.create().parse_overrides(task)
    except HydraException:
        return False
    return all(o.is_sweep_override() or steers_the_engine(o.get_key_element()) for o in parsed)


def study_folder(config_loader: ConfigLoader) -> str:
    """The study's own config folder, as errors name it (the primary config's source)."""
    main = [s.path for s in config_loader.get_sources() if s.provider == "main"]
    return main[0].removeprefix("file://") if main else "the study's config folder"


def check_experiment(config_loader: ConfigLoader, name: str) -> None:
    """An experiment the study has, else one line naming the ones it has, in its own folder."""
    experiments = group_options(config_loader, "experiment")
    if not experiments and name != DEFAULT_EXPERIMENT:
        raise InputError(f"unknown experiment {name!r}: this study has no experiment group (an experiment/ "
                         f"folder of named grids in {study_folder(config_loader)}); leave --experiment out")
    if experiments and name not in experiments:
        raise InputError(f"unknown experiment {name!r}: {close_match(name, experiments)}choose one of "
                         f"{', '.join(experiments)} ({study_folder(config_loader)}/experiment/)")


def experiment_override(config_loader: ConfigLoader, config_name: str, name: str) -> str | None:
    """The override that selects an experiment: `experiment=NAME` where the primary config's defaults list has
    an `experiment` entry, else `+experiment=NAME` (appended, as Hydra's own `+experiment=` does), so a study
    needs no entry to use `--experiment`; none for a study without experiments."""
    if not group_options(config_loader, "experiment"):
        return None
    primary = config_loader.repository.load_config(config_name)
    entries = primary.defaults_list if primary is not None and primary.defaults_list else []
    declared = any(getattr(d, "group", None) == "experiment" for d in entries)
    return f"experiment={name}" if declared else f"+experiment={name}"
