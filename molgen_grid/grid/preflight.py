"""A study's own checks of the cells a run would launch, before anything is claimed: a command that cannot be
written out or whose result file is not the cell's, and the study's input check (`grid.preflight`) on one
composed config per distinct set of the settings it reads (`grid.preflight_keys`), so a mistake costs nothing
and touches nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console

from molgen_grid.errors import InputError
from molgen_grid.grid.dotted import load
from molgen_grid.grid.plan import Entry
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.task.command import command_line, result_in_cell
from molgen_grid.grid.task.study import NOT_CELL


@dataclass
class StudyChecks:
    spec: GridSpec
    console: Console

    def __call__(self, todo: list[Entry]) -> None:
        settings = self.spec.settings
        if settings.command is not None and todo:
            self.check_command(todo[0])
        if not settings.preflight:
            return
        keys = set(settings.preflight_keys)
        representatives: dict[tuple, Entry] = {}
        for e in todo:
            signature = tuple((k, v) for k, v in e.cell.axes + e.cell.extra + e.cell.run if k.split(".")[0] in keys)
            representatives.setdefault(signature, e)
        check = load(settings.preflight)
        warnings: dict[str, None] = {}
        for e in representatives.values():
            cfg = self.spec.compose(e.cell)
            warnings.update(dict.fromkeys(check(OmegaConf.masked_copy(cfg, [k for k in cfg if k not in NOT_CELL]))
                                          or []))
        for warning in warnings:
            self.console.print(f"[yellow]warning: {warning}[/]")

    def check_command(self, entry: Entry) -> None:
        """A command that cannot be written out (a key its interpolation names is not there), or whose result
        file is not a file of the cell (it is unlinked before the command runs), is refused before anything
        launches, on one cell's composed config, rather than failing every cell."""
        hydra = HydraConfig.instance()
        sweep = hydra.cfg
        cfg = self.spec.compose(entry.cell)
        try:
            hydra.set_config(cfg)  # `${hydra:runtime.cwd}` resolves as in the cell's process
            command_line(cfg, self.spec.settings)
            result_in_cell(self.spec.settings.command_result)
        except OmegaConfBaseException as exc:
            raise InputError(f"grid.command cannot be written out for cell {entry.cell.name}: "
                             f"{str(exc).strip().splitlines()[0]}") from None
        finally:
            hydra.cfg = sweep
