"""The seam between the engine and what a cell runs, as optimum-benchmark has its scenarios and submitit its one
function on the node.

A `CellWork` is built by the sweep for one claimed cell and travels, pickled by submitit with the rest of the
cell's job, to the cell's own process. There the worker asks it, under the cell's lock, to compose the cell's
config (`compose`: the import path, Hydra's state, and the fingerprint of what it is about to run, taken as it is
now, since a queued job may start after an edit), then to run (`run`: the figures, in the task contract's form).
Everything else (the lock, the superseded check, retiring the previous outcome, the attempt's lines, the summary
or error record) is the worker's, the same for every kind.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol

from molgen_grid.grid.task.contract import CellHandle


@dataclass
class Composed:
    """A cell's config as its own process composed it."""

    #: The config as the summary records it (JSON-ready) and config.yaml shows it.
    config: dict[str, Any]
    #: The fingerprint's config, code and libraries parts (the worker adds the inputs the task named).
    fingerprint: dict[str, Any]
    #: How an error names the code that ran: `grid.task pkg.fn`, `the command python bench.py`, ...
    origin: str


class CellWork(Protocol):
    """What one cell runs, in the cell's own process."""

    def compose(self, cell_dir: Path) -> Composed:
        """The cell's config, composed here; the process made ready to run it (import path, Hydra's state)."""

    def run(self, cell: CellHandle) -> Mapping[str, Any]:
        """Run the cell; its figures (the task contract's form, `{"status": "unsupported", ...}` included).
        An exception fails the cell: the worker records it."""

    def failed(self, exc: BaseException, cell_dir: Path) -> None:
        """Keep what a caller needs of a failure beyond its error record (a Hydra app's sweeper re-raises the
        exception itself); most kinds keep nothing."""
