"""One report of several experiments of a study (`--report --experiment a,b`), under artifacts/<a>+<b>/.

Two experiments that pin two versions of one module (`grid.code`) are the same grid run twice: the answer is
their cells side by side, not two reports to read against each other. Each experiment's sweep plans its own grid
as its own report would (its overrides, its states, its stale policy); here its cells take their experiment as a
first setting (`experiment=a,variant=b`), so that the one-grid report (report/__init__.py) shows it as a column
and `--compare experiment=a:b` pairs the cells of equal name in the two experiments, with the ratios and the
speed-ups of any other comparison. `Experiments` stands in for the grid's spec: each cell's settings are read
from its own experiment's, and the report's settings (figures, baseline) are the first experiment's, so speed-ups
are over the first experiment's baseline.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

from omegaconf import OmegaConf

from molgen_grid.grid.cells import Cell, make_cell
from molgen_grid.grid.plan import Entry
from molgen_grid.grid.spec import GridSpec

#: The setting that tells the experiments' cells apart, and what joins their names into the report's folder.
EXPERIMENT, JOIN = "experiment", "+"


class Experiments:
    """The cells of several experiments as one grid, for the report (the parts of GridSpec a report reads)."""

    def __init__(self, parts: list[tuple[GridSpec, list[Entry]]]) -> None:
        first = parts[0][0]
        self.first = first
        self.experiment = JOIN.join(spec.experiment for spec, _ in parts)
        self.config_name = first.config_name
        self.hydra_overrides = first.hydra_overrides
        self.settings = OmegaConf.create(OmegaConf.to_container(first.settings))
        self.settings.description = " ".join(f"{spec.experiment}: {spec.settings.description}"
                                              for spec, _ in parts if spec.settings.description)
        self.own: dict[str, tuple[GridSpec, Cell]] = {}
        self.entries = [replace(e, cell=self.tagged(spec, e.cell)) for spec, entries in parts for e in entries]

    def tagged(self, spec: GridSpec, cell: Cell) -> Cell:
        """The cell with its experiment as its first setting (and its own spec remembered by that name)."""
        named = make_cell([(EXPERIMENT, spec.experiment), *cell.axes], dict(cell.extra), dict(cell.run), cell.added)
        self.own[named.name] = (spec, cell)
        return named

    def cell(self, overrides: Sequence[str]) -> Cell:
        """A cell of the first experiment (the baseline's experiment)."""
        return self.tagged(self.first, self.first.cell(overrides))

    def settings_of(self, cell: Cell, keys: Sequence[str]) -> dict[str, str]:
        """The cell's settings as its own experiment has them, its experiment among them."""
        spec, own = self.own[cell.name]
        values = spec.settings_of(own, [k for k in keys if k != EXPERIMENT])
        return {k: spec.experiment if k == EXPERIMENT else values[k] for k in keys}


def report_together(plans: list[tuple[Any, GridSpec, list[Entry]]]) -> None:
    """One report of the experiments these sweeps planned (each sweep's plan: its StudySweep, spec, entries),
    written by the first sweep (its artifacts folder, its --compare, --heatmap and --limit)."""
    if not plans:
        return
    experiments = Experiments([(spec, entries) for _, spec, entries in plans])
    plans[0][0].report(experiments, experiments.entries)
