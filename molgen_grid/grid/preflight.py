"""Command-line overrides checked before Hydra composes, so bad input gets one line, not a traceback.

Hydra reports an unknown option or key over several lines; the user should see one line that names the
problem and the fix, and a non-zero exit, before anything is composed, launched or written.
"""
from __future__ import annotations

import sys
from pathlib import Path

from hydra import initialize_config_dir
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
    """Exit with one line on stderr (status 2) when an override names an unknown experiment, option or key."""
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
            parsed = parser.parse_overrides(overrides)
            experiment = next((o.get_value_element_as_str() for o in parsed if o.key_or_group == "experiment"), None)
            hydra_overrides = [o.input_line for o in parsed if o.is_hydra_override()]
            if experiment is None:
                defaults = loader.load_configuration(config_name, hydra_overrides, run_mode=RunMode.RUN)
                experiment = defaults.hydra.runtime.choices.get("experiment", "default")
            GridSpec(loader, config_name, experiment, hydra_overrides).validate(overrides)
            # The sweep's primary config, as Hydra composes it next (sweeps left out): what it rejects, say here.
            loader.load_configuration(config_name, overrides, run_mode=RunMode.MULTIRUN)
    except InputError as exc:
        fail(str(exc))
    except (HydraException, OmegaConfBaseException) as exc:
        message = " ".join(str(exc).split())
        if message.startswith("Could not override"):
            message += " (a key that only some options of a swept group have: write ++key=value)"
        fail(message)
    finally:
        GlobalHydra.instance().clear()

