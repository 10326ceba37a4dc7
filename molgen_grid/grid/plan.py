"""From cells to a plan: each cell's state (every executor asked once for all its jobs), whether it runs, why."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from molgen_grid.grid.cells import Cell
from molgen_grid.grid.fingerprint import Current
from molgen_grid.grid.state import CANCELLED, COMPLETE, FAILED, IN_FLIGHT, INTERRUPTED, MISSING, STALE, CellState, \
    JobView, read_state
from molgen_grid.grid.store import SUMMARY, CellStore

FORCED = "forced"
#: What a plain run does with a stale cell (`grid.stale`).
STALE_POLICIES = ("rerun", "keep")


@dataclass
class Entry:
    """One cell of a plan (a study's cell, an app's job): its directory, state and why it runs."""

    cell: Cell
    store: CellStore
    #: The config part of the cell's fingerprint as it would be recorded now (the study's files, the app's
    #: composed config).
    config_of: Callable[[Cell], dict[str, str]] = field(repr=False)
    state: CellState = field(default_factory=lambda: CellState(MISSING))
    why: str | None = None

    @property
    def runs(self) -> bool:
        return self.why is not None

    @property
    def given_up(self) -> bool:
        """A failed cell that no longer runs: it used up its attempts (grid.retry.max_attempts)."""
        return not self.runs and self.state.state == FAILED

    @functools.cached_property
    def config_part(self) -> dict[str, str]:
        """The config part of the cell's fingerprint, as its config files and overrides are now (computed only
        for cells that finished or run: a status of thousands of missing cells never needs it)."""
        return self.config_of(self.cell)


def why_run(state: CellState, forced: bool, stale_policy: str = "rerun",
            max_attempts: int | None = None) -> str | None:
    """The reason a cell runs (missing, failed, interrupted, cancelled, stale, forced), or None when it is left
    alone: in flight, complete, stale and kept, or failed `max_attempts` times in a row (`grid.retry.max_attempts`)."""
    if state.state in IN_FLIGHT:
        return None
    if forced:
        return FORCED
    if state.state in COMPLETE or (state.state == STALE and stale_policy == "keep") or gave_up(state, max_attempts):
        return None
    return {MISSING: MISSING, FAILED: FAILED, INTERRUPTED: INTERRUPTED, CANCELLED: CANCELLED, STALE: STALE}[state.state]


def gave_up(state: CellState, max_attempts: int | None) -> bool:
    """Whether a failed cell has used up its attempts."""
    return state.state == FAILED and max_attempts is not None and state.failures >= max_attempts


def give_up_reason(state: CellState) -> str:
    """What a given-up cell's status says: the count, what runs it again, and its last failure."""
    last = f" (the last: {state.reason})" if state.reason else ""
    return f"gave up after {state.failures} attempts: --force to run it again{last}"


def setting_keys(entries: list[Entry]) -> list[str]:
    """The axes and every other override that any cell sets, in name order."""
    return list(dict.fromkeys(k for e in entries for k, _ in e.cell.axes + e.cell.extra))


def jobs_to_ask(stores: list[CellStore], histories: list[list[dict]]) -> dict[str, list[dict]]:
    """By executor, the last attempt of each cell that has no summary yet or was launched again since its
    summary (a forced rerun): all that an executor must be asked about. `histories`: each store's attempts."""
    out: dict[str, list[dict]] = {}
    for store, attempts in zip(stores, histories):
        if not attempts:
            continue
        last = attempts[-1]
        try:
            newer = last.get("when", 0) > os.stat(f"{store.where}/{SUMMARY}").st_mtime
        except OSError:
            newer = True
        if newer:
            out.setdefault(last.get("executor", ""), []).append(last)
    return out


def ask(executors: Mapping[str, object], stores: list[CellStore],
        histories: list[list[dict]]) -> dict[str, JobView]:
    """Each executor's view of its jobs, one batched call each."""
    wanted = jobs_to_ask(stores, histories)
    return {name: executor.view(wanted.get(name, [])) for name, executor in executors.items()}


def existing(root: Path) -> set[str]:
    """The cell directories under the experiment's root, listed once: a cell without one is missing, and its
    state needs no file read at all."""
    try:
        return {entry.name for entry in os.scandir(root) if entry.is_dir()}
    except OSError:
        return set()


def under(root: Path, cells: list[Cell], config_of: Callable[[Cell], dict[str, str]]) -> list[Entry]:
    """The entries of cells whose directories are named after them under one root (a study's experiment)."""
    return [Entry(cell, CellStore(root, cell.name), config_of) for cell in cells]


def make_plan(entries: list[Entry], forced: set[str], executors: Mapping[str, object], current: Current,
              stale_policy: str = "rerun", max_attempts: int | None = None,
              views: Mapping[str, JobView] | None = None,
              listed: Mapping[Path, set[str]] | None = None) -> tuple[list[Entry], dict[str, JobView]]:
    """Each cell's state (every executor asked once for all of its jobs) and whether it runs; a cell given up
    says so in its reason. `views`: the executors' views when they were asked already (a follower's poll asks
    once for the cells it reads again, poll.py), so that no executor is asked twice. `listed`: the `existing`
    cell directories of a root that the caller has just listed."""
    present: dict[Path, set[str]] = dict(listed or {})
    for e in entries:
        if e.store.root not in present:
            present[e.store.root] = existing(e.store.root)
    found = [e for e in entries if e.store.name in present[e.store.root]]
    histories = [e.store.attempts() for e in found]
    views = dict(views) if views is not None else ask(executors, [e.store for e in found], histories)
    for entry, attempts in zip(found, histories):
        entry.state = read_state(entry.store, lambda summary, e=entry: current.stale(summary.get("fingerprint"),
                                                                                    e.config_part),
                                 views, attempts=attempts, listed=True)
    for entry in entries:
        entry.why = why_run(entry.state, entry.cell.name in forced, stale_policy, max_attempts)
        if entry.why is None and gave_up(entry.state, max_attempts):
            entry.state.reason = give_up_reason(entry.state)
    return entries, views
