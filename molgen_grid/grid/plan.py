"""From cells to a plan: each cell's state, and whether it runs and why."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from molgen_grid.grid.cells import Cell
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.state import COMPLETE, FAILED, IN_FLIGHT, MISSING, STALE, CellState, read_state
from molgen_grid.grid.store import CellStore

FORCED = "forced"


@dataclass
class Entry:
    cell: Cell
    store: CellStore
    spec_hash: str
    state: CellState
    why: str | None

    @property
    def runs(self) -> bool:
        return self.why is not None


def why_run(state: CellState, forced: bool) -> str | None:
    """The reason a cell runs (missing, failed, stale, forced), or None when it is left alone."""
    if state.state in IN_FLIGHT:
        return None
    if forced:
        return FORCED
    if state.state in COMPLETE:
        return None
    return {MISSING: MISSING, FAILED: FAILED, STALE: STALE}[state.state]


def make_plan(spec: GridSpec, cells: list[Cell], root: Path, forced: set[str]) -> list[Entry]:
    entries = []
    for cell in cells:
        store = CellStore(root, cell.name)
        spec_hash = spec.spec_hash(cell)
        state = read_state(store, spec_hash)
        entries.append(Entry(cell, store, spec_hash, state, why_run(state, cell.name in forced)))
    return entries
