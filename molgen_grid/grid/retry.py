"""What a failed cell's next attempt asks for, said before it runs (`--dry-run`): an executor that adapts a
request after a failure (Slurm's, after OUT_OF_MEMORY or TIMEOUT: executors/slurm_retry.py) says so through its
`request` method, the one its launch uses too, so the plan shows what the run will ask."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from molgen_grid.grid.cells import Cell
from molgen_grid.grid.resources import executor_of
from molgen_grid.grid.plan import Entry
from molgen_grid.grid.state import FAILED


def requests(entries: list[Entry], executors: Mapping[str, Any],
             resources_of: Callable[[Cell], dict[str, Any]]) -> dict[str, str]:
    """{cell name: what grows and why} for the failed cells that run and whose executor grows their request."""
    notes = {}
    for e in entries:
        if not e.runs or e.state.state != FAILED:
            continue
        option = resources_of(e.cell)
        executor = executors.get(executor_of(option))
        note = executor.request(e, option)[1] if executor is not None else None
        if note:
            notes[e.cell.name] = note
    return notes
