"""Command-line overrides checked before Hydra composes, so bad input gets one line, not a traceback.

Hydra reports an unknown option or key over several lines; the user should see one line that names the
problem and the fix, and a non-zero exit, before anything is composed, launched or written.
"""
from __future__ import annotations

import re
from pathlib import Path

from hydra import initialize_config_dir
from hydra.core.config_loader import ConfigLoader
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, OverrideParseException
from hydra.types import RunMode

from molgen_grid.errors import InputError, fail
from omegaconf.errors import OmegaConfBaseException
from molgen_grid.grid.spec import GridSpec

#: Flags that ask Hydra about the app (`--cfg job`, `--info config`) instead of running it: Hydra handles them.
INFO_FLAGS = ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc")
#: Flags that point Hydra at another config tree or a saved run: such command lines are left to Hydra.
OTHER_CONFIG_FLAGS = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn", "--experimental-rerun")


def overrides_of(argv: list[str]) -> list[str] | None:
    """The overrides on a Hydra command line; None when it names another config tree (not checked here)."""
    if any(arg.split("=")[0] in OTHER_CONFIG_FLAGS for arg in argv[1:]):
        return None
    return [arg for arg in argv[1:] if not arg.startswith("-")]


def check_command_line(conf_dir: Path, config_name: str, argv: list[str]) -> None:
    """Exit with one line on stderr (status 2) when an override cannot be read or names an unknown experiment,
    option or key. One composition, as Hydra composes the sweep next; only when it fails is the cause sought
    (each override checked, with a suggestion), so a valid command pays for nothing more."""
    if any(arg.split("=")[0] in INFO_FLAGS for arg in argv[1:]):
        return
    overrides = overrides_of(argv)
    if not overrides:
        return
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            parser = OverridesParser.create(config_loader=loader)
            for line in overrides:
                try:
                    parser.parse_overrides([line])
                except OverrideParseException:
                    raise InputError(f"cannot read override {line!r}: write key=value, a sweep as key=a,b "
                                     "(Hydra's override grammar)") from None
            try:
                loader.load_configuration(config_name, overrides, run_mode=RunMode.MULTIRUN)
            except (HydraException, OmegaConfBaseException) as exc:
                raise InputError(diagnose(loader, config_name, overrides, exc)) from None
    except InputError as exc:
        fail(str(exc))
    finally:
        GlobalHydra.instance().clear()


def diagnose(loader: ConfigLoader, config_name: str, overrides: list[str], exc: Exception) -> str:
    """Why Hydra refused these overrides, in one line that names the fix."""
    parser = OverridesParser.create(config_loader=loader)
    parsed = parser.parse_overrides(overrides)
    experiment = next((o.get_value_element_as_str() for o in parsed if o.key_or_group == "experiment"), "default")
    hydra_overrides = [o.input_line for o in parsed if o.is_hydra_override()]
    spec = GridSpec(loader, config_name, experiment, hydra_overrides)  # an unknown experiment is named here
    spec.validate(overrides)  # an unknown option or key, with a suggestion
    message = " ".join(str(exc).split())
    scoped = re.match(r"Could not override '([^']+)'", message)
    if scoped:
        key = scoped.group(1)
        group = key.partition(".")[0]
        having = spec.options_with(key)
        swept = any(o.key_or_group == group and o.is_sweep_override() for o in parsed)
        if having and swept:
            return (f"{key} is a key of {group}={', '.join(having)}, not of {group}={spec.choices.get(group)}, the "
                    f"option Hydra composes first while {group} is swept: write ++{key}=... to add it to every "
                    "option")
        if having:
            return (f"{key} is a key of {group}={', '.join(having)}, not of {group}={spec.choices.get(group)}: "
                    f"choose one of those options ({group}=...), or write ++{key}=... to add it")
    return message
