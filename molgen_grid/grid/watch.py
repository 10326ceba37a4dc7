"""`--watch`: from any shell, the display of `--wait` (follow.py) without running or submitting anything first.

`--wait` is a run: it launches what is not done, then follows. Watching only reads the grid's plan, so a second
shell can follow cells that another one runs or submitted, and Ctrl-C stops the watching, never the cells. It
polls as `--wait` does (poll.py).
"""
from __future__ import annotations

from typing import Mapping

from rich.console import Console

from molgen_grid.grid.follow import follow, moving
from molgen_grid.grid.plan import Entry
from molgen_grid.grid.poll import Replan
from molgen_grid.grid.state import JobView
from molgen_grid.words import plural


def watch(console: Console, title: str, entries: list[Entry], replan: Replan, executors: Mapping[str, object],
          views: Mapping[str, JobView] | None = None, noun: str = "cell") -> None:
    """Follow the grid until nothing is queued or running; say first what is followed, and at the end the
    grid's census. `entries`, `views`: the grid as planned (follow.py)."""
    def announced(now: list[Entry]) -> list[str]:
        return [f"watching {title}: {plural(len(moving(now)), noun)} queued or running (launching nothing; Ctrl-C "
                "stops the watching, not them)"]

    console.print(f"watched {title}: {follow(console, entries, replan, executors, views, announced)}",
                  highlight=False)
