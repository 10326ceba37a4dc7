"""A command line run as the project's sweep, composed once, with bad input as one line.

Hydra's own entry point composes the config twice before the sweep starts (once to read `hydra.mode`, once to
sweep), and a check that gave bad input one line composed it a third time: about a quarter of a second each on a
2-core machine, where `--status` of 10,000 cells should answer in under 3 s. Here the sweep's one composition is the
check: when it fails, the cause is sought (each override parsed, the experiment, options and keys named with a
suggestion) and the user sees one line that names the problem and the fix, and a non-zero exit, before anything is
launched or written. Command lines that ask Hydra about the app, or point it at another config tree, go to Hydra
itself.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from hydra import initialize_config_dir
from hydra.core.config_loader import ConfigLoader
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from molgen_grid.errors import InputError, fail
from molgen_grid.grid.study_sweep import ALL_CELLS
from molgen_grid.grid.spec import GridSpec, check_experiment, experiment_override

#: Flags that ask Hydra about the app (`--cfg job`, `--info config`) instead of running it: Hydra handles them.
INFO_FLAGS = ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc",
              "--version")
#: The only flags a sweep reads (every command line is a sweep here); any other is refused (refuse_tool_flags).
MULTIRUN_FLAGS = ("-m", "--multirun")
#: Flags that point Hydra at a config path relative to the app, or a saved run: left to Hydra.
OTHER_CONFIG_FLAGS = ("--config-path", "-cp", "--experimental-rerun")
#: Flags that name the config tree and primary config a sweep runs (read here, not by Hydra).
CONFIG_DIR_FLAGS = ("--config-dir", "-cd")
CONFIG_NAME_FLAGS = ("--config-name", "-cn")
#: The engine's sweeper and launcher, selected for every study (a study's config need not name them).
ENGINE_PLUGINS = ("hydra/sweeper=grid", "hydra/launcher=grid")
#: A report: with several experiments, each sweep hands its plan back (TOGETHER) for one report of them all.
REPORT, TOGETHER = "hydra.launcher.action=report", "hydra.launcher.together=true"
#: What reads a single grid: one JSON document (`--status --json`), cells named by their names in it (`--force`).
ONE_GRID_ONLY = {"hydra.launcher.json": "--status --json", "hydra.launcher.force": "--force NAME",
                 "hydra.launcher.cancel": "--cancel NAME"}


def for_hydra(argv: list[str]) -> bool:
    """Whether this command line is Hydra's to run (its own flags), not a plain sweep."""
    return any(arg.split("=")[0] in INFO_FLAGS + OTHER_CONFIG_FLAGS for arg in argv[1:])


def config_tree(argv: list[str], default_dir: Path) -> tuple[list[str], Path, str]:
    """The command line less `--config-dir DIR` and `--config-name NAME` (either as `--flag=value`), the
    config directory (checked) and the primary config's name."""
    rest, values = [argv[0]], {"dir": None, "name": None}
    args = iter(argv[1:])
    for arg in args:
        flag, eq, value = arg.partition("=")
        kind = "dir" if flag in CONFIG_DIR_FLAGS else "name" if flag in CONFIG_NAME_FLAGS else None
        if kind is None:
            rest.append(arg)
            continue
        values[kind] = value if eq else next(args, None)
        if not values[kind]:
            raise InputError(f"{flag} needs a value: {flag} {kind.upper()}")
    conf_dir = Path(values["dir"]).expanduser().resolve() if values["dir"] else default_dir
    name = values["name"] or "config"
    if not conf_dir.is_dir():
        raise InputError(f"--config-dir {values['dir']}: no such directory: give the folder that holds the "
                         "study's config (config.yaml and its groups)")
    if not (conf_dir / f"{name}.yaml").is_file():
        raise InputError(f"{conf_dir} has no {name}.yaml: give the folder that holds the study's primary config "
                         "(or name it with --config-name)")
    return rest, conf_dir, name


def engine_overrides(overrides: list[str]) -> list[str]:
    """The overrides a sweep composes with: the engine's sweeper and launcher first; an engine setting
    (`grid.stale=keep`) is added or replaced (`++`), so a study need not declare the `grid:` block to set one."""
    def as_setting(line: str) -> str:
        return f"++{line}" if line.startswith("grid.") else line

    return [*ENGINE_PLUGINS, *(as_setting(o) for o in overrides)]


def never_called(cfg: Any) -> None:
    """The task function Hydra asks for: every cell runs through the launcher, in a process of its own."""


def run_sweep(conf_dir: Path, config_name: str, argv: list[str]) -> None:
    """Compose each sweep's config once and hand it to the project's sweeper and launcher: one sweep per
    experiment named (`experiment=a,b` is two grids, one after the other; a report of them is one report of
    both, report/together.py). A sweep whose cells failed (exit
    status 1) does not stop the next one; the command then ends with status 1."""
    refuse_tool_flags(argv)
    given = engine_overrides([arg for arg in argv[1:] if arg not in MULTIRUN_FLAGS])
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3", job_name="molgen_grid"):
        app = GlobalHydra.instance().hydra
        assert app is not None
        failed = False
        sweeps = per_experiment(app.config_loader, config_name, given)
        together = len(sweeps) > 1 and REPORT in given  # one report of several experiments
        plans = []
        for overrides in sweeps:
            try:
                returned = app.multirun(config_name=config_name, task_function=never_called,
                                        overrides=overrides + ([TOGETHER] if together else []))
                plans += [plan for batch in returned or [] for plan in batch]
            except (HydraException, OmegaConfBaseException) as exc:
                fail(cause(app.config_loader, config_name, overrides, exc))
            except SystemExit as exc:
                if exc.code != 1:
                    raise
                failed = True
        if together:
            from molgen_grid.grid.report.together import report_together

            report_together(plans)
        if failed:
            sys.exit(1)


def refuse_tool_flags(argv: list[str]) -> None:
    """A flag a sweep does not read is refused, never dropped: `python -m molgen_grid --dry-run -m ...` would
    otherwise launch the whole grid that its user asked only to see (--status, --dry-run, --force are the tool's
    flags, read by `molgen-grid`)."""
    flags = [arg for arg in argv[1:] if arg.startswith("-") and arg not in MULTIRUN_FLAGS]
    if flags:
        raise InputError(f"{' '.join(flags)}: not a flag of python -m molgen_grid (it takes Hydra overrides and -m), "
                         f"so nothing ran: the tool's flags go to molgen-grid, e.g. molgen-grid {flags[0]} "
                         f"[overrides] (or bash sbatch/run.sh {flags[0]} [overrides])")


def per_experiment(loader: ConfigLoader, config_name: str, overrides: list[str]) -> list[list[str]]:
    """The overrides of each sweep a command line asks for: one per experiment it names, each experiment checked
    before any runs, and each selected as the study's defaults list allows (`+experiment=` where it has no
    `experiment` entry). Hydra would compose one sweep with the first experiment's grid and run the others' cells
    in it."""
    parser = OverridesParser.create(config_loader=loader)
    try:
        parsed = parser.parse_overrides(overrides)
    except HydraException:
        return [overrides]  # the sweep's composition fails, and `cause` names the override
    at = [i for i, o in enumerate(parsed) if o.key_or_group == "experiment"]
    if not at:
        return [overrides]
    chosen = parsed[at[-1]]
    names = list(chosen.sweep_string_iterator()) if chosen.is_sweep_override() else [
        chosen.get_value_element_as_str()]
    for name in names:
        check_experiment(loader, name)
    distinct = list(dict.fromkeys(names))
    one_grid = [ONE_GRID_ONLY[o.key_or_group] for o in parsed
                if o.key_or_group in ONE_GRID_ONLY and o.value() not in (False, [ALL_CELLS])]
    if len(distinct) > 1 and one_grid:
        raise InputError(f"{one_grid[0]} reads one grid, and experiment={','.join(names)} names {len(distinct)}: "
                         f"run one command per experiment ({', '.join(f'--experiment {n}' for n in distinct)})")
    rest = [line for i, line in enumerate(overrides) if i not in at]
    selected = [experiment_override(loader, config_name, name) for name in distinct]
    return [rest + ([line] if line else []) for line in selected]


def cause(loader: ConfigLoader, config_name: str, overrides: list[str], exc: Exception) -> str:
    """Why Hydra refused these overrides, in one line that names the fix."""
    try:
        return diagnose(loader, config_name, overrides, exc)
    except InputError as named:
        return str(named)


def diagnose(loader: ConfigLoader, config_name: str, overrides: list[str], exc: Exception) -> str:
    """The override that cannot be read, the unknown experiment, option or key (InputError), else the message
    of Hydra's refusal, with the fix when a key belongs to another option."""
    parser = OverridesParser.create(config_loader=loader)
    for line in overrides:
        try:
            parser.parse_overrides([line])
        except OverrideParseException:
            raise InputError(f"cannot read override {line!r}: write key=value, a sweep as key=a,b "
                             "(Hydra's override grammar)") from None
    parsed = parser.parse_overrides(overrides)
    experiment = next((o.get_value_element_as_str() for o in parsed if o.key_or_group == "experiment"), None)
    hydra_overrides = [o.input_line for o in parsed if o.is_hydra_override()]
    spec = GridSpec(loader, config_name, experiment, hydra_overrides)  # an unknown experiment is named here
    spec.overrides.validate(overrides)  # an unknown option or key, with a suggestion
    message = " ".join(str(exc).split())
    scoped = re.match(r"Could not override '([^']+)'", message)
    if scoped:
        key = scoped.group(1)
        group = key.partition(".")[0]
        having = spec.overrides.options_with(key)
        swept = any(o.key_or_group == group and o.is_sweep_override() for o in parsed)
        if having and swept:
            return (f"{key} is a key of {group}={', '.join(having)}, not of {group}={spec.choices.get(group)}, the "
                    f"option Hydra composes first while {group} is swept: write ++{key}=... to add it to every "
                    "option")
        if having:
            return (f"{key} is a key of {group}={', '.join(having)}, not of {group}={spec.choices.get(group)}: "
                    f"choose one of those options ({group}=...), or write ++{key}=... to add it")
    return message
