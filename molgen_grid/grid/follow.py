"""`--wait`: follow every queued or running cell of the grid to its end, whoever submitted it.

Each round reads the grid again through a poll (poll.py: each executor asked once, one sacct and one squeue for a
Slurm grid; only the cells whose files or job changed read again), every 5 s in the first minute and every 30 s
after it, whatever the grid's size and however often its states change, so that following a long queue costs
the cluster little. A progress bar counts the cells in flight, those that were when following began and any that
another shell launches meanwhile. A held cell waits for a person, not for time: following ends without it and says
how to release it.
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Callable, Mapping

from rich.console import Console

from molgen_grid.grid import poll
from molgen_grid.grid.plan import Entry
from molgen_grid.grid.state import HELD, IN_FLIGHT, JobView, counts_line
from molgen_grid.words import plural

if TYPE_CHECKING:
    from molgen_grid.grid.top_up import TopUp

#: The states followed: those that end without anyone acting.
MOVING = IN_FLIGHT - {HELD}


def census(entries: list[Entry]) -> str:
    """`4 cells: 3 done, 1 failed`: every cell once, by state, in the states' order."""
    return f"{plural(len(entries), 'cell')}: " + counts_line(Counter(e.state.state for e in entries))


def moving(entries: list[Entry]) -> set[str]:
    """The cells that end without anyone acting."""
    return {e.cell.name for e in entries if e.state.state in MOVING}


def follow(console: Console, entries: list[Entry], replan: poll.Replan, executors: Mapping[str, object],
           views: Mapping[str, JobView] | None = None,
           before: Callable[[list[Entry]], list[str]] = lambda entries: [], top_up: TopUp | None = None) -> str:
    """Poll until no cell of the grid is queued, running or requeued; the grid's census at the end. `entries`:
    the grid as planned, with the executors' `views` of it when that plan is the grid as it is now (else it is
    read again first). `before`: the lines said once following begins (the time left: estimate.py); `top_up`:
    submits the cells that wait for room under the user's submission limit as jobs end (top_up.py)."""
    poller = poll.Poller(replan, executors)
    entries = poller.start(entries, views)
    followed = moving(entries)
    if not followed and not (top_up and top_up.waiting):
        return f"nothing to follow (no cell is queued or running); {census(entries)}"
    for line in before(entries):
        console.print(line, markup=False, highlight=False)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # --wait only

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    started = poll.now()
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("following", total=len(followed))
        while True:
            followed |= moving(entries)
            states = {e.cell.name: e.state.state for e in entries if e.cell.name in followed}
            ended = sum(1 for s in states.values() if s not in MOVING)
            tally = Counter(states.values())
            progress.update(bar, total=len(followed), completed=ended,
                            description=", ".join(f"{n} {s}" for s, n in sorted(tally.items())))
            if ended == len(followed) and not (top_up and top_up.waiting):
                break
            poll.next_poll(started)
            entries = poller(entries)
            if top_up is not None and top_up(entries):
                entries = poller(entries)  # what it submitted is followed from now
    for e in entries:
        if e.cell.name in followed and e.state.state not in MOVING and e.state.reason:
            console.print(f"{e.cell.name}: {e.state.state}: {e.state.reason}")
    return census(entries)
