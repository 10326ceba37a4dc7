"""A run of a plan: check what would be launched, claim each cell, hand it to its executor, and say what happened.

The same for a study's cells and a Hydra app's jobs. Everything that can refuse a run is checked before the first
cell is claimed: the executors (a Slurm cell needs a cluster that answers) and the study's own checks (preflight.py),
so a mistake costs nothing and touches nothing. Then the scheduled cells are claimed and submitted at once, the
local cells are claimed and run one after another, both in the grid's order or, with `grid.interleave`, by that
setting's value.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from rich.console import Console

from molgen_grid.errors import InputError
from molgen_grid.grid.claim import BUSY, ELSEWHERE, FINISHED, Claimer
from molgen_grid.grid.dotted import value_at
from molgen_grid.grid.executors.base import Claim, Executor
from molgen_grid.grid.figures import Figure, headline_of
from molgen_grid.grid.plan import Entry
from molgen_grid.grid.resources import executor_of
from molgen_grid.grid.state import FAILED, IN_FLIGHT
from molgen_grid.words import plural



@dataclass
class SweepOutcome:
    """What a sweep did with each cell of its grid: every cell is counted once."""

    total: int = 0
    done: int = 0
    ran: int = 0
    failed: int = 0
    submitted: int = 0
    in_flight: int = 0
    busy: int = 0
    #: Cells left missing because the user's submission limit is reached (`--wait` submits them later).
    waiting: int = 0
    #: The job ids this sweep submitted (an interrupt leaves them running and says how to cancel them).
    jobs: list[str] = field(default_factory=list)
    #: The local cell running now, if any (an interrupt stops it).
    running: str | None = None

    def line(self) -> str:
        parts = [f"{self.done} done", f"{self.ran} run", f"{self.failed} failed"]
        parts += [text for count, text in ((self.submitted, f"{self.submitted} submitted"),
                                           (self.in_flight, f"{self.in_flight} queued or running elsewhere"),
                                           (self.busy, f"{self.busy} left to another sweep"),
                                           (self.waiting, f"{self.waiting} waiting for room to submit")) if count]
        return ", ".join(parts)


@dataclass
class ConsoleEvents:
    """The executors' news, as lines on the console with each local cell's place in the queue."""

    console: Console
    #: The figure a finished cell's line shows, and the dotted path of the cell's warnings in summary.json (what
    #: a reader must know before trusting its figures).
    headline: Figure | None
    warnings: str | None = None
    counters: dict[str, str] = field(default_factory=dict)
    outcome: SweepOutcome = field(default_factory=SweepOutcome)
    #: What the grid's members are called (cells of a study, jobs of an app).
    noun: str = "cell"
    #: After a local cell ended: the time left of the others (`~3.0 s left`, estimate.py), or None.
    left: Callable[[Entry], str | None] = lambda entry: None

    def _name(self, claim: Claim) -> str:
        return f"{self.counters.get(claim.entry.cell.name, '')} {claim.entry.cell.name}".strip()

    def waiting(self, claim: Claim, why: str) -> None:
        self.console.print(f"{self._name(claim)}: {why}")

    def started(self, claim: Claim) -> None:
        self.outcome.running = claim.entry.cell.name
        self.console.print(f"{self._name(claim)}: running ({claim.entry.why})")

    def finished(self, claim: Claim, failure: str | None, seconds: float) -> None:
        self.outcome.running = None
        store = claim.entry.store
        left = self.left(claim.entry)
        left = f" ({left})" if left else ""
        if failure is None:
            summary = store.summary() or {}
            figure = self.headline or headline_of(summary)
            value = figure.read(summary)[0] if figure is not None else None
            shown = f", {figure.name} {value:.4g}" if isinstance(value, (int, float)) else ""
            self.outcome.ran += 1
            status = summary.get("status", "ok")
            why = f": {summary.get('reason')}" if status != "ok" and summary.get("reason") else ""
            self.console.print(f"{self._name(claim)}: [green]{status}[/] in {seconds:.1f}s{shown}{why}{left}")
            for warning in (value_at(summary, self.warnings) if self.warnings else None) or []:
                self.console.print(f"  [yellow]warning: {warning}[/]", highlight=False)
            return
        recorded = store.error()
        if recorded is not None and recorded.get("reason"):
            failure = recorded["reason"]
        self.outcome.failed += 1
        self.console.print(f"{self._name(claim)}: [red]failed[/] in {seconds:.1f}s: {failure} "
                           f"(logs in {store.dir / 'logs'}){left}")

    def submitted(self, where: str, job_id: str, claims: list[Claim]) -> None:
        self.outcome.submitted += len(claims)
        self.outcome.jobs.append(job_id)
        self.console.print(f"submitted array {job_id} to {where}: {plural(len(claims), self.noun)}")


@dataclass
class Runner:
    """Runs the cells of a plan that need it."""

    #: What the opening line calls the grid (`experiment default`, `sweep multirun/train`) and its members.
    title: str
    noun: str
    entries: list[Entry]
    executors: dict[str, Executor]
    claimers: Callable[[str], Claimer]
    console: Console
    #: Each cell's resources (its `executor` and what the executor is asked for), and how a message names them.
    resources_of: Callable[[Entry], dict[str, Any]]
    label_of: Callable[[Entry], str]
    #: Where the `executor` key is set, for a message about an unknown one (a group, hydra.launcher), and where
    #: the executors there are come from.
    where: str
    executors_from: str
    events: "ConsoleEvents"
    #: The study's own checks of the cells to run, before anything is claimed (preflight.py).
    check: Callable[[list[Entry]], None] = lambda todo: None
    #: Stop launching after the first cell of this run that fails (`--fail-fast`): the rest stay as they were.
    fail_fast: bool = False
    #: The launch order's key (`grid.interleave`); None: the grid's order. The sort is stable.
    order: Callable[[Entry], Any] | None = None

    @property
    def outcome(self) -> SweepOutcome:
        """What the sweep did, as its events counted it."""
        return self.events.outcome

    def preflight(self, todo: list[Entry], resources: dict[str, dict[str, Any]]) -> None:
        """What would refuse the run, checked before anything is claimed: each executor's own check, then the
        study's."""
        by_executor: dict[str, dict[str, dict[str, Any]]] = {}
        for e in todo:
            by_executor.setdefault(executor_of(resources[e.cell.name]), {})[self.label_of(e)] = \
                resources[e.cell.name]
        unknown = sorted(set(by_executor) - set(self.executors))
        if unknown:
            raise InputError(f"{self.where}.executor={unknown[0]!r} (in {', '.join(sorted(by_executor[unknown[0]]))}) "
                             f"is not an executor: choose one of {', '.join(self.executors)} ({self.executors_from})")
        for name, executor in self.executors.items():
            executor.check(by_executor.get(name, {}))
        self.check(todo)

    def adopt(self) -> None:
        """Record the jobs found for submissions cut short before their ids were written (a sweep stopped
        while sbatch ran): they are the cells' jobs from now on, whoever asks."""
        for e in self.entries:
            if e.state.job_id is None or e.state.state not in IN_FLIGHT:
                continue
            last = (e.store.attempts() or [{}])[-1]
            if last.get("attempt") and not last.get("job_id"):
                e.store.append_attempt({"update": True, "attempt": last["attempt"], "job_id": e.state.job_id,
                                        "adopted": True})

    def __call__(self) -> SweepOutcome:
        self.adopt()
        todo = self._todo()
        outcome = self.outcome
        outcome.total = len(self.entries)
        given_up = [e for e in self.entries if e.given_up]
        outcome.failed = len(given_up)
        outcome.done = sum(1 for e in self.entries if not e.runs and e.state.state not in IN_FLIGHT | {FAILED})
        outcome.in_flight = sum(1 for e in self.entries if not e.runs and e.state.state in IN_FLIGHT)
        resources = {e.cell.name: self.resources_of(e) for e in todo}
        self.preflight(todo, resources)
        self.console.print(f"{self.title}: {plural(len(self.entries), self.noun)}, {len(todo)} to run, "
                           f"{outcome.done} done, {outcome.in_flight} queued or running", highlight=False)
        for e in given_up:
            self.console.print(f"{e.cell.name}: [red]{e.state.reason}[/]", highlight=False)
        self._launch_todo(todo, resources)
        return outcome

    def submit_more(self) -> int:
        """A top-up while following (top_up.py): what the plan now runs goes out as the scheduler's limits let
        it, with no adoption, checks or header, which the run already made for these cells; how many cells
        still wait for room."""
        todo = self._todo()
        self._launch_todo(todo, {e.cell.name: self.resources_of(e) for e in todo})
        return self.outcome.waiting

    def _todo(self) -> list[Entry]:
        todo = [e for e in self.entries if e.runs]
        if self.order is not None:
            todo.sort(key=self.order)
        return todo

    def _launch_todo(self, todo: list[Entry], resources: dict[str, dict[str, Any]]) -> None:
        """Scheduled cells first, claimed and submitted at once (they queue on the cluster while the local ones
        run here), then the local ones one after another; `--fail-fast` stops at this run's first failure."""
        outcome, events = self.outcome, self.events
        failed_before = outcome.failed
        by_executor: dict[str, list[Entry]] = {}
        for e in todo:
            by_executor.setdefault(executor_of(resources[e.cell.name]), []).append(e)
        for name in sorted(by_executor, key=lambda n: self.executors[n].blocking):
            executor = self.executors[name]
            members = self._admitted(executor, by_executor[name], resources)
            claim = self.claimers(name)
            if executor.blocking:
                for index, e in enumerate(members, 1):
                    if self.fail_fast and outcome.failed > failed_before:
                        break
                    events.counters[e.cell.name] = f"[{index}/{len(members)}]"
                    self._launch(executor, [claim(e, resources[e.cell.name])], events)
            elif not (self.fail_fast and outcome.failed > failed_before):
                self._launch(executor, [claim(e, resources[e.cell.name]) for e in members], events)

    def _admitted(self, executor: Executor, members: list[Entry], resources: dict[str, dict[str, Any]]) -> list[Entry]:
        """The cells the scheduler's limits let go out now, never claimed beyond them: the rest stay missing, the
        reason said once (executors/slurm_limits.py)."""
        admitted, lines = executor.admit([resources[e.cell.name] for e in members], self.noun)
        for line in lines:
            self.console.print(line, highlight=False, markup=False)
        self.outcome.waiting += admitted.count(False)
        return [e for e, go in zip(members, admitted) if go]

    def _launch(self, executor: Executor, claims: list[Claim | str], events: ConsoleEvents) -> None:
        for claimed in claims:
            if claimed == BUSY:
                self.outcome.busy += 1
            elif claimed == ELSEWHERE:
                self.outcome.in_flight += 1
            elif claimed == FINISHED:
                self.outcome.done += 1
        ready = [c for c in claims if isinstance(c, Claim)]
        if ready:
            executor.launch(ready, events)
