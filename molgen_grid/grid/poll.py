"""How a follower (follow.py, watch.py) reads a grid again: at a pace a cluster's admin welcomes, and only what
changed.

Slurm's man pages ask programs not to poll the controller in loops; submitit backs off to one sacct a minute,
Snakemake's executor to one every 40 to 180 s. A poll here asks each executor once for the jobs of the cells in
flight (for Slurm: one sacct, and one squeue while a job lives), every 5 s during the first minute so that a short
run ends promptly, then every 30 s, whatever the grid's size and however often its states change. A poll reads a
cell again only when its files (attempts, summary, error record) or its job, as the executor now sees it, changed
since the poll before; a done cell is never read again. A cell in flight on an executor that runs it on this
machine is read at every poll (the process holding its lock says more than its files), and asks no cluster.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Mapping

from molgen_grid.grid.plan import Entry, ask
from molgen_grid.grid.state import COMPLETE, IN_FLIGHT, JobView
from molgen_grid.grid.store import ATTEMPTS, ERROR, SUMMARY

#: The first minute of following polls every EARLY_S; after it, every STEADY_S.
EARLY_S = 5.0
FIRST_MINUTE_S = 60.0
STEADY_S = 30.0
#: The files whose change makes a poll read a cell again (its logs grow all the time and say nothing of its state).
TELLING = (ATTEMPTS, SUMMARY, ERROR)

#: These cells planned again as new entries, nothing forced, and the executors' views: `views` when a poll asked
#: them already (no executor is asked then), else each executor asked once (`make_plan`).
Replan = Callable[[list[Entry], Mapping[str, JobView] | None], tuple[list[Entry], dict[str, JobView]]]

#: The clock and the sleep of polling, looked up at each poll: a test of the schedule replaces them rather than
#: wait minutes.
now = time.monotonic
pause = time.sleep


def interval(elapsed: float) -> float:
    """Seconds from one poll to the next, `elapsed` seconds after following began."""
    return EARLY_S if elapsed < FIRST_MINUTE_S else STEADY_S


def next_poll(started: float) -> None:
    """Wait until the next poll is due; following began at `started` (`now()`)."""
    pause(interval(now() - started))


def files_of(entry: Entry) -> tuple:
    """What the cell's telling files are now (inode, size, mtime; None: absent): equal, nothing was written."""
    out = []
    for name in TELLING:
        try:
            st = os.stat(f"{entry.store.where}/{name}")  # no Path per file: every poll, every cell
        except OSError:
            out.append(None)
        else:
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class Poller:
    """Reads a grid again poll after poll, remembering each cell's files, last attempt and job as last seen."""

    def __init__(self, replan: Replan, executors: Mapping[str, object]) -> None:
        self.replan, self.executors = replan, executors
        self.files: dict[str, tuple] = {}
        self.attempts: dict[str, list[dict]] = {}
        self.jobs: dict[str, tuple | None] = {}

    def start(self, entries: list[Entry], views: Mapping[str, JobView] | None) -> list[Entry]:
        """The grid to follow from: `entries` as planned with `views` (a plan just read), or with no views (the
        grid changed since, a run launched cells) read again whole, each executor asked once."""
        if views is None:
            entries, views = self.replan(entries, None)
        if not any(e.state.state in IN_FLIGHT for e in entries):  # nothing to follow: nothing to remember
            return entries
        for entry in entries:
            if entry.state.state not in COMPLETE:
                self.files[entry.cell.name] = files_of(entry)
                self.attempts[entry.cell.name] = entry.store.attempts()
                if entry.state.state in IN_FLIGHT:
                    self.jobs[entry.cell.name] = self.job(views, entry.cell.name)
        return entries

    def __call__(self, entries: list[Entry]) -> list[Entry]:
        """One poll: the grid with the cells that changed read again (each executor asked once)."""
        changed = set()
        for entry in entries:
            name = entry.cell.name
            if entry.state.state in COMPLETE:
                continue
            files = files_of(entry)
            if files != self.files.get(name):
                self.files[name], self.attempts[name] = files, entry.store.attempts()
                changed.add(name)
        asked = [i for i, e in enumerate(entries) if e.cell.name in changed or e.state.state in IN_FLIGHT]
        views = ask(self.executors, [entries[i].store for i in asked],
                    [self.attempts[entries[i].cell.name] for i in asked])
        again = []
        for i in asked:
            name = entries[i].cell.name
            job = self.job(views, name)
            if name in changed or job != self.jobs.get(name) or self.here(name):
                self.jobs[name] = job
                again.append(i)
        if not again:
            return entries
        fresh, _ = self.replan([entries[i] for i in again], views)
        out = list(entries)
        for i, entry in zip(again, fresh):
            out[i] = entry
            if entry.state.state in COMPLETE:  # never read again: what was kept of it goes
                for kept in (self.files, self.attempts, self.jobs):
                    kept.pop(entry.cell.name, None)
        return out

    def job(self, views: Mapping[str, JobView], name: str) -> tuple | None:
        """The cell's job as its executor's view tells it now (its state word, reason and id)."""
        last = self.last(name)
        view = views.get(last.get("executor", ""))
        if view is None or not last:
            return None
        seen = view.job_state(last, None)
        return seen.state, seen.reason, seen.job_id

    def last(self, name: str) -> dict:
        """The cell's last attempt as last seen ({} before any)."""
        return (self.attempts.get(name) or [{}])[-1]

    def here(self, name: str) -> bool:
        """Whether the cell's last attempt runs on this machine (its executor blocks while it runs)."""
        last = self.last(name)
        return bool(getattr(self.executors.get(last.get("executor", "")), "blocking", False))
