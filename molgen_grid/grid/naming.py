"""A cell's name from the overrides Hydra's sweeper hands over: one configuration, one name.

An override names a cell only where it changes what the cell composes: an axis is always named, a key set to the
experiment's default (or an option its parent group chooses anyway) is dropped, a key that only says how a cell
runs (`grid.not_identity`) goes to the cell's run overrides, and a key the experiment lacks (`+key=...`) is
remembered as added. Two spellings of one configuration are one cell.
"""
from __future__ import annotations

from itertools import chain
from typing import TYPE_CHECKING, Iterable, Sequence

from molgen_grid.grid.cells import Cell, make_cell
from molgen_grid.grid.overrides import ABSENT

if TYPE_CHECKING:
    from molgen_grid.grid.spec import GridSpec


class CellNamer:
    """Names the cells of one spec's sweep."""

    def __init__(self, spec: GridSpec) -> None:
        self.spec = spec

    def cell(self, overrides: Sequence[str]) -> Cell:
        """The cell that these overrides select (the experiment's defaults filling the rest)."""
        parsed = list(filter(None, map(self.spec.overrides.parse, overrides)))
        choices = dict(self.spec.choices)
        choices.update([(k, v) for k, v, is_group, _ in parsed if is_group])
        extra: dict[str, str] = {}
        run: dict[str, str] = {}
        added: set[str] = set()
        for key, value, is_group, adds in parsed:
            if key in self.spec.axis_set:
                continue
            if key in self.spec.not_identity:
                run[key] = value
                continue
            if not adds and not self.spec.defaults.applies(key, choices):
                continue
            default = self.spec.option_of(key, choices) == value if is_group else \
                self.spec.defaults.is_default(key, value, choices)
            if default:
                extra.pop(key, None)
                continue
            extra[key] = value
            if adds and self.spec.defaults.value_of(key, choices) is ABSENT:
                added.add(key)
        return make_cell([(a, choices[a]) for a in self.spec.axes], extra, run, frozenset(added))

    def chosen(self, job_overrides: Iterable[Sequence[str]]) -> dict[str, set[str]]:
        """Each group's options that the sweep's jobs choose, every distinct override read once."""
        options: dict[str, set[str]] = {}
        distinct = dict.fromkeys(chain.from_iterable(job_overrides))
        for key, value, is_group, _ in filter(None, map(self.spec.overrides.parse, distinct)):
            if is_group:
                options.setdefault(key, set()).add(value)
        return options

    def cells(self, job_overrides: Iterable[Sequence[str]],
              chosen: dict[str, set[str]] | None = None) -> list[Cell]:
        """Distinct cells in sweep order (two spellings of one cell are one cell). `chosen`: `chosen(job_overrides)`
        where the caller has read it already."""
        jobs = [list(overrides) for overrides in job_overrides]
        options = self.chosen(jobs) if chosen is None else chosen
        self.spec.defaults.swept = {group for group, values in options.items() if len(values) > 1}
        seen: dict[str, Cell] = {}
        for overrides in jobs:
            c = self.cell(overrides)
            seen.setdefault(c.name, c)
        return list(seen.values())
