"""The engine's settings (`grid:` in a study's config), every one with a default, so a study sets only its own.

A study's config tree may have no `grid:` block at all: it names its code (`grid.task` or `grid.command`) and
whatever differs from the defaults here. The settings are read as this schema merged with the study's block
(OmegaConf's structured merge), so a misspelt key or a value of the wrong type is refused in one line that
names the settings there are, before anything runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from molgen_grid.errors import InputError


@dataclass
class SlurmSettings:
    #: At most this many tasks of one job array run at once.
    array_parallelism: int = 32
    #: A job that reaches its time limit is requeued (from the start) at most this many times.
    max_requeues: int = 2
    #: Seconds before the time limit at which Slurm warns the job, so that it can requeue itself.
    signal_delay_s: int = 30


@dataclass
class GrowSettings:
    #: After a Slurm job ended OUT_OF_MEMORY, the next attempt asks for `mem_gb` times this; after TIMEOUT, for
    #: `time_min` times this (each capped at the partition's limit). 1: the same request again.
    memory: float = 2.0
    time: float = 2.0


@dataclass
class RetrySettings:
    #: A cell whose last this-many attempts in a row failed is given up: a plain run leaves it failed, `--force`
    #: runs it again (and starts the count anew). Null: no limit, every run retries a failed cell.
    max_attempts: Optional[int] = None
    grow: GrowSettings = field(default_factory=GrowSettings)


@dataclass
class ReportSettings:
    #: Dotted paths into summary.json; the first ranks the cells, heads the run lines and gives the speed-ups.
    #: Empty: every number (or {median, min, max, values} spread) the task returned, in its order.
    figures: List[str] = field(default_factory=list)
    #: Figures where less is better (times, sizes): their speed-up is baseline / cell.
    lower_is_better: List[str] = field(default_factory=list)
    #: A dotted path to a list of sentences a reader must know before trusting a cell's figures.
    warnings: Optional[str] = None
    #: A dotted path to a mapping (name: value) of where a cell's figures come from (the machine, the sizes of
    #: what ran): the report lists each name once with its distinct values, under "Context".
    context: Optional[str] = None
    #: A dotted path to a mapping from a figure's dotted path to what it counts and what its clock covers: the
    #: report says it of the figure that ranks the cells.
    definitions: Optional[str] = None
    #: A figure's timed repeats spread too wide to trust when max / min exceeds `spread_ratio` or their
    #: coefficient of variation (stdev / mean) exceeds `spread_cv`: the report warns, naming the cell and figure.
    #: null: that test is off.
    spread_ratio: Optional[float] = 2.0
    spread_cv: Optional[float] = 0.25
    #: Settings whose cells compare only among themselves (`[batch_size]`: a batch of 8 is not a faster batch
    #: of 1): each value has its own baseline (the declared one at that value) and its own best cell.
    within: List[str] = field(default_factory=list)
    #: Settings whose cells are replicates of one configuration (`[replicate]`: the same cell again, in another
    #: process): the rank test and interval pool the repeats of all of a configuration's replicates.
    pool: List[str] = field(default_factory=list)


@dataclass
class GridSettings:
    #: The study's code: a callable `task(cfg, cell)` (dotted path), or a command (a list, no shell).
    task: Optional[str] = None
    command: Optional[List[str]] = None
    #: The JSON file a command writes in the cell's directory: the summary's figures.
    command_result: str = "result.json"
    #: Files a command reads (its script, ...): their content is part of the cells' fingerprint.
    command_inputs: List[str] = field(default_factory=list)
    #: A folder (or a list of them) put first on the cell's import path: an experiment's pinned code, every
    #: file of which is part of the fingerprint.
    code: Any = None
    #: The config group whose option says where a cell runs (its `executor` and resources); null: here.
    resources: Optional[str] = None
    #: The key `--limit N` sets (test mode: N items per cell); null: the study has no test mode.
    limit_key: Optional[str] = None
    #: Optional hooks (dotted paths): a check of each setting's value, a check of a cell's inputs before
    #: anything launches (on one composed config per distinct set of `preflight_keys`), and the library
    #: versions a result depends on (a hook, or a list of distribution names).
    check: Optional[str] = None
    preflight: Optional[str] = None
    preflight_keys: List[str] = field(default_factory=list)
    versions: Any = None
    #: Keys that only say how a cell is run: never part of its name or fingerprint (the resource group's
    #: scheduling keys are added by the engine).
    not_identity: List[str] = field(default_factory=list)
    #: The config groups that name a cell, in this order, before every other override; null: every group of
    #: the defaults list (the experiment aside), in its order.
    axes: Optional[List[str]] = None
    #: What a plain run does with a stale cell: rerun it, or keep it (it counts as done; reports mark it).
    stale: str = "rerun"
    #: The `executor` names of the resource group's options and the classes that launch their cells.
    executors: Dict[str, str] = field(default_factory=lambda: {
        "local": "molgen_grid.grid.executors.local.LocalExecutor",
        "slurm": "molgen_grid.grid.executors.slurm.SlurmExecutor",
    })
    results_dir: str = "results"
    artifacts_dir: str = "artifacts"
    #: Machine-wide locks, one per device: local cells of every sweep here take turns. MOLGEN_GRID_DEVICE_LOCKS
    #: moves them (a /tmp private to each service, or test runs in parallel that must not wait on each other).
    device_locks: str = "${oc.env:MOLGEN_GRID_DEVICE_LOCKS,/tmp/molgen-grid-devices}"
    #: A setting whose values are rounds of the grid (`replicate`: the same configuration again, in a process of
    #: its own): cells to run launch ordered by it, every cell's first value before any second (numbers as numbers),
    #: so that drift over the sweep falls on every configuration alike. Null: the grid's order.
    interleave: Optional[str] = None
    #: What the experiment studies, and the cell (a full or partial name) reports compare against.
    description: str = ""
    baseline: Optional[str] = None
    report: ReportSettings = field(default_factory=ReportSettings)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)


#: How a cell runs, read from its resource group's option: never part of its name or fingerprint.
SCHEDULING_KEYS = ("time_min", "mem_gb", "cpus_per_task", "partition", "gres", "account", "qos", "constraint",
                   "additional", "setup")
SETTING_NAMES = tuple(f.name for f in fields(GridSettings))


def read_settings(block: Any) -> DictConfig:
    """The engine's settings: the defaults with the study's `grid:` block (None: no block) merged over them."""
    schema = OmegaConf.structured(GridSettings)
    try:
        merged = OmegaConf.merge(schema, block) if block is not None else schema
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or ""
        raise InputError(f"grid.{key or '?'}: {' '.join(str(exc).split()).split('full_key')[0].strip()} "
                         f"(the engine's settings: {', '.join(SETTING_NAMES)})") from None
    if (merged.task is None) == (merged.command is None):
        raise InputError("grid.task and grid.command: set exactly one (the study's callable task(cfg, cell), "
                         "or the command each cell runs); see docs/tasks.md")
    retry = merged.retry
    if retry.max_attempts is not None and retry.max_attempts < 1:
        raise InputError(f"grid.retry.max_attempts={retry.max_attempts}: give a number of attempts of 1 or more, "
                         "or null (no limit)")
    for key in ("memory", "time"):
        if retry.grow[key] < 1:
            raise InputError(f"grid.retry.grow.{key}={retry.grow[key]}: a factor of 1 or more (1: ask the same "
                             "again)")
    if merged.resources is not None:
        group = merged.resources
        merged.not_identity = [*merged.not_identity,
                               *(f"{group}.{k}" for k in SCHEDULING_KEYS if f"{group}.{k}" not in merged.not_identity)]
    return merged


def code_folders(settings: Any) -> list[str]:
    """`grid.code` as a list of folders (one folder may be written without the list)."""
    code = settings.get("code")
    if code is None:
        return []
    return [str(code)] if isinstance(code, str) else [str(c) for c in code]
