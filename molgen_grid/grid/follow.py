"""`--wait`: follow every queued or running cell of the grid to its end, whoever submitted it.

Each poll re-reads the grid's plan (one sacct call for all its jobs), shows a progress bar of the cells that
were in flight when following began, and waits longer between polls while nothing changes (1 s, growing to
30 s, back to 1 s on any change), so following a long queue costs the cluster little. A held cell waits for a
person, not for time: following ends without it and says how to release it.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from molgen_grid.grid.plan import Entry
from molgen_grid.grid.state import HELD, IN_FLIGHT, STATES
from molgen_grid.words import plural

if TYPE_CHECKING:
    from molgen_grid.grid.top_up import TopUp

FIRST_POLL_S = 1.0
LONGEST_POLL_S = 30.0
BACKOFF = 1.5
#: The states followed: those that end without anyone acting.
MOVING = IN_FLIGHT - {HELD}


def census(entries: list[Entry]) -> str:
    """`4 cells: 3 done, 1 failed`: every cell once, by state, in the states' order."""
    counts = Counter(e.state.state for e in entries)
    return f"{plural(len(entries), 'cell')}: " + ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])


def follow(console: Console, replan: Callable[[], list[Entry]], sleep: Callable[[float], None] = time.sleep,
           estimate: Callable[[list[Entry]], list[str]] = lambda entries: [], top_up: TopUp | None = None) -> str:
    """Poll until no cell of the grid is queued, running or requeued; the grid's census at the end. `estimate`:
    the lines of time left said before following (estimate.py); `top_up`: submits the cells that wait for room
    under the user's submission limit as jobs end (top_up.py)."""
    entries = replan()
    followed = {e.cell.name for e in entries if e.state.state in MOVING}
    if not followed and not (top_up and top_up.waiting):
        return f"nothing to follow (no cell is queued or running); {census(entries)}"
    for line in estimate(entries):
        console.print(line, markup=False, highlight=False)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    interval, seen = FIRST_POLL_S, None
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("following", total=len(followed))
        while True:
            states = {e.cell.name: e.state.state for e in entries if e.cell.name in followed}
            ended = sum(1 for s in states.values() if s not in MOVING)
            tally = Counter(states.values())
            progress.update(bar, completed=ended,
                            description=", ".join(f"{n} {s}" for s, n in sorted(tally.items())))
            if ended == len(followed) and not (top_up and top_up.waiting):
                break
            interval = FIRST_POLL_S if states != seen else min(LONGEST_POLL_S, interval * BACKOFF)
            seen = states
            sleep(interval)
            entries = replan()
            if top_up is not None and top_up(entries):
                entries = replan()
                followed |= {e.cell.name for e in entries if e.state.state in MOVING}
                progress.update(bar, total=len(followed))
    for e in entries:
        if e.cell.name in followed and e.state.state not in MOVING and e.state.reason:
            console.print(f"{e.cell.name}: {e.state.state}: {e.state.reason}")
    return census(entries)
