"""`--watch`: from any shell, the display of `--wait` (follow.py) without running or submitting anything first.

`--wait` is a run: it launches what is not done, then follows. Watching only reads the grid's plan, so a second
shell can follow cells that another one runs or submitted, and Ctrl-C stops the watching, never the cells.
"""
from __future__ import annotations

from typing import Callable

from rich.console import Console

from molgen_grid.grid.follow import MOVING, follow
from molgen_grid.grid.plan import Entry
from molgen_grid.words import plural


def watch(console: Console, title: str, replan: Callable[[], list[Entry]], noun: str = "cell") -> None:
    """Follow the grid until nothing is queued or running; say first what is followed, and at the end the
    grid's census."""
    first = True

    def announced() -> list[Entry]:
        nonlocal first
        entries = replan()
        moving = sum(1 for e in entries if e.state.state in MOVING)
        if first and moving:
            console.print(f"watching {title}: {plural(moving, noun)} queued or running (launching nothing; Ctrl-C "
                          "stops the watching, not them)", highlight=False)
        first = False
        return entries

    console.print(f"watched {title}: {follow(console, announced)}", highlight=False)
