"""Stopping a grid's local cells that another process of this user runs on this machine.

A cell's process is signalled through its submitit controller (its job id is its pid), which passes SIGTERM on
to the cell: the cell stops as a Ctrl-C would stop it. When the whole grid is cancelled, the sweep that runs the
cell is signalled instead: it stops its cell the same way and starts none of the grid's other cells. Only a
process that is still the one recorded (its boot and start time) and that belongs to this user is signalled;
`--cancel` then waits for the cell's lock, so that it returns once the cell has stopped.
"""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from molgen_grid.grid.state import alive, claimer_alive

#: How long a signalled or stopped cell may take to stop, record itself as interrupted and let its lock go.
STOP_WAIT_S = 30.0


def target(stop: Any, whole_grid: bool) -> int | None:
    """The process to signal for this cell: its sweep (the whole grid), else its controller; None when no
    process of it has started (its recorded cancellation keeps it from starting)."""
    attempt = stop.attempt
    if whole_grid and attempt.get("claimed_by") and claimer_alive(attempt):
        return int(attempt["claimed_by"])
    job = attempt.get("job_id")
    if job and alive(int(job), attempt.get("host"), attempt.get("when"), attempt.get("job_identity")):
        return int(job)
    return None


def signal_problem(pid: int) -> str | None:
    """SIGTERM to a process of this user; why not, otherwise."""
    try:
        owner = Path(f"/proc/{pid}").stat().st_uid
    except OSError:
        return None  # ended meanwhile: nothing left to stop
    if owner != os.getuid():
        return f"process {pid} belongs to another user (uid {owner}): ask them, or their administrator"
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    except PermissionError as exc:
        return f"process {pid}: {exc.strerror}"
    return None


def stop_cells(stops: list[Any], whole_grid: bool) -> None:
    """Signal each cell's process (each sweep once) and wait for the signalled cells to stop."""
    here = socket.gethostname()
    signalled: dict[int, str | None] = {}
    waiting = []
    for stop in stops:
        host = stop.attempt.get("host")
        stop.where = "this machine" if host == here else host or "an unknown host"
        if host != here:
            stop.problem = f"it runs on {host}: cancel it there"
            continue
        pid = target(stop, whole_grid)
        if pid is None:
            continue
        if pid not in signalled:
            signalled[pid] = signal_problem(pid)
        stop.problem = signalled[pid]
        if stop.problem is None:
            waiting.append(stop)
    deadline = time.monotonic() + STOP_WAIT_S
    while any(s.entry.store.is_locked() for s in waiting) and time.monotonic() < deadline:
        time.sleep(0.1)
