"""One interface for every way a cell runs, as submitit splits its core from its `local` and `slurm` folders.

An executor launches claimed cells (`claim.py` takes each cell's lock, rechecks its state, records the attempt
and releases the lock, the same for every executor) and reads back, in one batched call per plan, what became
of the jobs it launched. The executor of a cell is the `executor` key of its option of the study's resource
group (`grid.resources`); `grid.executors` maps that name to a class, so another scheduler is one new module and
one line of config.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig

from molgen_grid.grid.plan import Entry
from molgen_grid.grid.state import JobView
from molgen_grid.grid.dotted import load
from molgen_grid.grid.worker import CellJob


@dataclass
class Claim:
    """A cell this sweep claimed: its plan entry, the job its process will run, and its resources."""

    entry: Entry
    job: CellJob
    resources: dict[str, Any]


class Events(Protocol):
    """What an executor tells the sweep as it goes (the sweep prints it)."""

    def waiting(self, claim: Claim, why: str) -> None: ...

    def started(self, claim: Claim) -> None: ...

    def finished(self, claim: Claim, failure: str | None, seconds: float) -> None: ...

    def submitted(self, where: str, job_id: str, claims: list[Claim]) -> None: ...


class Executor(Protocol):
    """Launches claimed cells and reads back their jobs."""

    #: The resource option's `executor` value that selects it; also what attempts.jsonl records.
    name: str
    #: Whether `launch` returns only when its cells ended (local) or as soon as they are queued (a scheduler).
    blocking: bool

    def launch(self, claims: list[Claim], events: Events) -> None:
        """Run or submit these cells; each launch completes its claim's attempt (job id, log)."""

    def admit(self, options: list[dict[str, Any]], noun: str = "cell") -> tuple[list[bool], list[str]]:
        """Which of these cells (each its resources, in launch order) may go out now under the scheduler's
        limits, and a line for each limit that holds the rest back, naming them by `noun` (cells of a study,
        jobs of an app); this machine's executor has no limit."""

    def prefetch(self) -> None:
        """Start asking, in the background, what `admit` will need (a scheduler's limits): called as a sweep that
        may send cells here begins to plan, so that the scheduler's answer comes while the plan is made."""

    def view(self, attempts: list[dict]) -> JobView:
        """What became of these attempts' jobs (the last attempt of each cell that has no summary since)."""

    def cancel(self, stops: list[Any], whole_grid: bool) -> None:
        """Stop these cells' jobs (cancel.Stop each, its cancellation already recorded): say where each ran, and
        set `problem` on one it could not stop. `whole_grid`: no cell was named."""

    def request(self, entry: Any, option: dict[str, Any], claimed: str | None = None) -> tuple[dict, str | None]:
        """What the cell's next attempt asks for (its option, or more after a failure the scheduler reported) and
        what grew and why (None: nothing grew)."""

    def check(self, options: dict[str, dict[str, Any]]) -> None:
        """Refuse (InputError, one line) what cannot be launched at all, before anything is claimed. `options`:
        each resource option its cells chose (`group=option`) and what it asks for."""


def executors(settings: DictConfig, root: Path) -> dict[str, Executor]:
    """Every executor of `grid.executors`, by name, for the experiment whose results are under `root`."""
    return {name: load(path)(settings, root) for name, path in settings.executors.items()}
