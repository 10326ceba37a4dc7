"""`--wait` over a grid larger than the user's submission limit: as jobs end, the cells left waiting go out.

A run submits up to the user's MaxSubmitJobs (executors/slurm_limits.py) and leaves the rest missing. While
following, each poll that finds fewer of the grid's cells in flight than the poll before (room freed up) submits
what the limit now lets go out; a poll where nothing ended asks the cluster nothing more, unless the last try found
no room (then each poll tries again: the user's other jobs, or the grid's own leaving the queue, free it).
`--status` and `--dry-run` say how many cells would wait, and for which limit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from molgen_grid.grid.follow import moving as in_flight
from molgen_grid.grid.plan import Entry
from molgen_grid.grid.resources import executor_of


@dataclass
class TopUp:
    """The hook `follow` calls after each poll (its `top_up`)."""

    #: Runs the grid as planned now; returns how many cells still wait for room.
    submit: Callable[[list[Entry]], int]
    #: How many cells wait for room now.
    waiting: int
    moving: int | None = None
    #: Whether the last try sent nothing: the room then frees up without this grid's jobs ending (the user's other
    #: jobs end, or the grid's own ended jobs leave the queue a moment after their cells read done).
    no_room: bool = False

    def __call__(self, entries: list[Entry]) -> bool:
        """Submit more when cells wait and some of the grid's jobs ended since the last poll (at the first poll:
        since the run, however fast they ended), or the last try found no room; whether it tried."""
        moving = len(in_flight(entries))
        freed = self.moving is None or moving < self.moving or self.no_room
        self.moving = moving
        if not self.waiting or not freed:
            return False
        before, self.waiting = self.waiting, self.submit(entries)
        self.no_room = self.waiting == before
        self.moving = moving + before - self.waiting  # what went out now is in flight at the next poll
        return True


def waiting_lines(entries: list[Entry], executors: dict[str, Any], resources_of: Callable[[Entry], dict],
                  noun: str = "cell") -> list[str]:
    """What a status and a dry run say of the cells (an app's jobs: `noun`) a run would leave waiting for room:
    each scheduler's limits asked only when cells would go to it (a grid that runs here reads none)."""
    wanted: dict[str, list[dict]] = {}
    for e in entries:
        if e.runs:
            resources = resources_of(e)
            wanted.setdefault(executor_of(resources), []).append(resources)
    lines: list[str] = []
    for name, options in wanted.items():
        executor = executors.get(name)
        if executor is not None:
            lines += executor.admit(options, noun)[1]
    return lines
