"""`--cancel`: stop the grid's queued, running and held jobs, wherever they run, and record each as cancelled.

The cancellation is written into the attempt (attempts.jsonl) before anything is signalled, so the cell reads
`cancelled` from that moment on, whatever its job then leaves behind (Slurm's CANCELLED, an interrupted local
cell's error record), and a job that starts after it does not run (worker.superseded). Each executor stops its
own jobs in as few calls as it can (`cancel` of executors/: one scancel per Slurm array); one it could not stop
gets its cancellation taken back, and reads as its executor says. Done cells are never touched.
"""
from __future__ import annotations

import getpass
import socket
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from molgen_grid.grid.plan import Entry
from molgen_grid.grid.state import IN_FLIGHT


@dataclass
class Stop:
    """One cell to stop: its plan entry and its last attempt (with the job id the plan found for it); the executor
    fills in where it ran and, when it could not stop it, why."""

    entry: Entry
    attempt: dict
    where: str = ""
    problem: str | None = None

    @property
    def job(self) -> str:
        return f"job {self.attempt['job_id']}" if self.attempt.get("job_id") else "no job yet"


def to_stop(entry: Entry) -> Stop | None:
    """The cell's stop, when it is queued, running or held under an attempt of its own."""
    attempts = entry.store.attempts() if entry.state.state in IN_FLIGHT else []
    if not attempts:
        return None
    last = attempts[-1]
    return Stop(entry, {**last, "job_id": last.get("job_id") or entry.state.job_id})


def mark(stop: Stop, record: dict | None) -> None:
    """Record the cancellation on the cell's attempt (None: take it back)."""
    stop.entry.store.append_attempt({"update": True, "attempt": stop.attempt.get("attempt"), "cancelled": record})


def cancel(entries: list[Entry], executors: Mapping[str, object], named: bool, say: Callable[[str], None]) -> int:
    """Cancel every cell of `entries` in flight; `named`: the user named them (the others are said to have
    nothing to cancel, and a local sweep running one is left to go on with its other cells). Returns how many
    were cancelled."""
    by_executor: dict[str, list[Stop]] = {}
    for entry in entries:
        stop = to_stop(entry)
        if stop is None:
            if named:
                say(f"{entry.cell.name}: {entry.state.state}, nothing to cancel")
            continue
        by_executor.setdefault(str(stop.attempt.get("executor")), []).append(stop)
    record = {"by": getpass.getuser(), "at": time.time(), "host": socket.gethostname()}
    count = 0
    for name, stops in by_executor.items():
        executor = executors.get(name)
        for stop in stops:
            mark(stop, record)
        stopper = getattr(executor, "cancel", None)
        if stopper is None:
            for stop in stops:
                stop.problem = f"executor {name!r} cannot cancel its jobs"
        else:
            stopper(stops, not named)
        for stop in stops:
            if stop.problem:
                mark(stop, None)
                say(f"{stop.entry.cell.name}: not cancelled ({stop.job}): {stop.problem}")
            else:
                count += 1
                say(f"{stop.entry.cell.name}: cancelled {stop.job} on {stop.where}")
    if not by_executor and not named:
        say("nothing to cancel: no cell is queued, running or held")
    return count

