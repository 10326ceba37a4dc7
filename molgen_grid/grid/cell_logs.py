"""`--logs CELL [--follow] [--attempt N]`: one attempt's stdout and stderr, Slurm's or this machine's.

The files are the ones the attempt's record names (logfiles.py, as `--status --json` finds them). Following
prints what the files gain, as `tail -f` does, and ends when the cell does: its summary or error record for this
attempt written (looked for with the files, every half second), or the engine's state of the cell no longer in
flight (a job gone without a record): read from this machine as often, from a cluster at most every 30 s.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Mapping

from molgen_grid.errors import InputError
from molgen_grid.grid.cells import Cell
from molgen_grid.grid.follow import MOVING
from molgen_grid.grid.forced import named_cells
from molgen_grid.grid.logfiles import LogFiles, log_files
from molgen_grid.grid.plan import Entry
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.state import IN_FLIGHT, CellState, belongs_to
from molgen_grid.words import plural

#: How often a followed attempt's files (and its summary or error record) are read.
POLL_S = 0.5
#: How often a cluster is asked whether a followed job is still there.
CLUSTER_POLL_S = 30.0
NO_NAME = "hydra.launcher.action=logs needs a cell: hydra.launcher.logs=NAME (--logs NAME)"


def only_one(name: str | None, matches: list[str]) -> str:
    """The one cell a name selects (as `--force` reads names); a name that selects several is refused, listing
    them by their full names (each one a name `--logs` takes)."""
    if not name:
        raise InputError(NO_NAME)
    if len(matches) != 1:
        raise InputError(f"logs of {name!r}: it names {plural(len(matches), 'cell')}: {'; '.join(matches)} "
                         f"(name one of them)" if matches else f"logs of {name!r}: it names no cell")
    return matches[0]


def one_cell(spec: GridSpec, name: str | None, grid: list[Cell], root: Path) -> Cell:
    """A study's cell named by `--logs`: a name or part of one, as `--force` takes them (forced.py)."""
    matches = {c.name: c for c in named_cells(spec, [name], grid, root)} if name else {}
    return matches[only_one(name, list(matches))]


def where(attempt: dict) -> str:
    """Where an attempt ran (or was sent): its executor, a Slurm partition, the node its process started on."""
    parts = [attempt.get("executor") or "unknown executor"]
    if attempt.get("partition"):
        parts.append(f"partition {attempt['partition']}")
    parts.append(f"node {attempt['node']}" if attempt.get("node") else f"from host {attempt.get('host')}")
    if attempt.get("device"):
        parts.append(f"device {attempt['device']}")
    return ", ".join(parts)


def header(cell: str, number: int, total: int, attempt: dict, files: LogFiles) -> str:
    lines = [f"cell {cell}: attempt {number} of {total} (id {attempt.get('attempt') or 'none recorded'}), "
             f"job {attempt.get('job_id') or 'none yet'} ({where(attempt)})"]
    lines += [f"  {label}: {path or 'none recorded yet'}" for label, path in files.named()]
    return "\n".join(lines) + "\n"


class Tail:
    """What an attempt's files gained since the last look, each stretch headed by its file as `tail` does."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.offsets: dict[Path, int] = {}
        self.shown: Path | None = None
        self.line_open = False

    def __call__(self, files: LogFiles, every: bool = False) -> None:
        """Print what is new; `every`: head each file even when it has nothing (yet)."""
        for label, path in files.named():
            if path is None:
                continue
            try:
                with open(path, "rb") as f:
                    if os.fstat(f.fileno()).st_size < self.offsets.get(path, 0):  # rewritten (a requeued job's)
                        self.offsets[path] = 0
                    f.seek(self.offsets.get(path, 0))
                    data = f.read()
            except FileNotFoundError:
                data, missing = b"", True
            else:
                missing = False
            if data or every:
                if path != self.shown or every:
                    self.write(("\n" if self.line_open else "") + f"==> {label} <=="
                               + (" (not written yet)" if missing else " (empty)" if not data else "") + "\n")
                    self.shown, self.line_open = path, False
                self.offsets[path] = self.offsets.get(path, 0) + len(data)
                if data:
                    self.write(data.decode(errors="replace"))
                    self.line_open = not data.endswith(b"\n")


def show_logs(entry: Entry, name: str, number: int | None, follow: bool,
              replan: Callable[[], list[Entry]], executors: Mapping[str, object]) -> None:
    """Print attempt `number` (1 = the first; None: the current one) of the entry's cell, and with `follow` what
    it writes until it ends. `replan`: the cell's plan read again (its state the engine's way)."""
    attempts = entry.store.attempts()
    if not attempts:
        raise InputError(f"--logs {name!r}: cell {entry.cell.name} has no attempt yet ({entry.state.state}): "
                         "nothing was launched, so there is no log")
    if number is not None and not 1 <= number <= len(attempts):
        raise InputError(f"--attempt {number}: cell {entry.cell.name} has {plural(len(attempts), 'attempt')} "
                         f"(1 is the first)")
    index = len(attempts) - 1 if number is None else number - 1
    attempt = attempts[index]
    files = log_files(attempt)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    write(header(entry.cell.name, index + 1, len(attempts), attempt, files))
    tail = Tail(write)
    tail(files, every=True)
    if not follow or index != len(attempts) - 1:
        return
    state = entry.state if entry.state.state not in MOVING else followed(entry, attempt, tail, replan, executors)
    ended = "is" if state.state in IN_FLIGHT else "ended"  # held: waits for a person, not followed
    write(("\n" if tail.line_open else "") + f"==> attempt {index + 1} {ended}: {state.state}"
          + (f": {state.reason}" if state.reason else "") + " <==\n")


def followed(entry: Entry, attempt: dict, tail: Tail, replan: Callable[[], list[Entry]],
             executors: Mapping[str, object]) -> CellState:
    """Print what the attempt's files gain until it ends; the cell's state then."""
    blocking = getattr(executors.get(attempt.get("executor", "")), "blocking", False)
    state_every = POLL_S if blocking else CLUSTER_POLL_S
    asked = time.monotonic()
    while not recorded(entry, attempt):
        time.sleep(POLL_S)
        attempt = entry.store.attempt(attempt.get("attempt")) or attempt
        tail(log_files(attempt))
        if time.monotonic() - asked >= state_every:
            asked = time.monotonic()
            if replan()[0].state.state not in MOVING:
                break
    tail(log_files(attempt))
    return replan()[0].state


def recorded(entry: Entry, attempt: dict) -> bool:
    """Whether the attempt wrote how it ended: its summary, or its error record."""
    summary = entry.store.summary()
    return bool(summary and summary.get("attempt") == attempt.get("attempt")) or \
        belongs_to(entry.store.error(), attempt)
