"""A run of a plan: check what would be launched, claim each cell, hand it to its executor, and say what happened.

Everything that can refuse a run is checked before the first cell is claimed: the executors (a Slurm cell needs
a cluster that answers) and the cells' own input checks (`grid.preflight`, on one composed config per distinct
set of the settings it reads, `grid.preflight_keys`), so a mistake costs nothing and touches nothing. Then the
scheduled cells are claimed and submitted at once, the local cells are claimed and run one after another, and
with `wait` every queued or running cell of the grid is followed to its end.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console

from molgen_grid.errors import InputError
from molgen_grid.grid.claim import BUSY, ELSEWHERE, FINISHED, Claimer
from molgen_grid.grid.dotted import load, value_at
from molgen_grid.grid.executors.base import Claim, Executor
from molgen_grid.grid.figures import Figure, headline, headline_of
from molgen_grid.grid.plan import Entry
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.state import IN_FLIGHT
from molgen_grid.grid.worker import command_line
from molgen_grid.words import plural

LOCAL = "local"


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
    #: The job ids this sweep submitted (an interrupt leaves them running and says how to cancel them).
    jobs: list[str] = field(default_factory=list)
    #: The local cell running now, if any (an interrupt stops it).
    running: str | None = None

    def line(self) -> str:
        parts = [f"{self.done} done", f"{self.ran} run", f"{self.failed} failed"]
        parts += [text for count, text in ((self.submitted, f"{self.submitted} submitted"),
                                           (self.in_flight, f"{self.in_flight} queued or running elsewhere"),
                                           (self.busy, f"{self.busy} left to another sweep")) if count]
        return ", ".join(parts)


@dataclass
class ConsoleEvents:
    """The executors' news, as lines on the console with each local cell's place in the queue."""

    console: Console
    outcome: SweepOutcome
    #: The figure a finished cell's line shows, and the dotted path of the cell's warnings in summary.json (what
    #: a reader must know before trusting its figures).
    headline: Figure | None
    warnings: str | None = None
    counters: dict[str, str] = field(default_factory=dict)

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
        if failure is None:
            summary = store.summary() or {}
            figure = self.headline or headline_of(summary)
            value = figure.read(summary)[0] if figure is not None else None
            shown = f", {figure.name} {value:.4g}" if isinstance(value, (int, float)) else ""
            self.outcome.ran += 1
            status = summary.get("status", "ok")
            why = f": {summary.get('reason')}" if status != "ok" and summary.get("reason") else ""
            self.console.print(f"{self._name(claim)}: [green]{status}[/] in {seconds:.1f}s{shown}{why}")
            for warning in (value_at(summary, self.warnings) if self.warnings else None) or []:
                self.console.print(f"  [yellow]warning: {warning}[/]", highlight=False)
            return
        recorded = store.error()
        if recorded is not None and recorded.get("reason"):
            failure = recorded["reason"]
        self.outcome.failed += 1
        self.console.print(f"{self._name(claim)}: [red]failed[/] in {seconds:.1f}s: {failure} "
                           f"(logs in {store.dir / 'logs'})")

    def submitted(self, where: str, job_id: str, claims: list[Claim]) -> None:
        self.outcome.submitted += len(claims)
        self.outcome.jobs.append(job_id)
        self.console.print(f"submitted array {job_id} to {where}: {plural(len(claims), 'cell')}")


@dataclass
class Runner:
    """Runs the cells of a plan that need it."""

    spec: GridSpec
    entries: list[Entry]
    executors: dict[str, Executor]
    claimers: Callable[[str], Claimer]
    console: Console
    outcome: SweepOutcome = field(default_factory=SweepOutcome)

    def resources(self, todo: list[Entry]) -> dict[str, dict[str, Any]]:
        """Each cell's option of the resource group: where and how it runs (one read per option)."""
        return {e.cell.name: self.spec.resources(e.cell) for e in todo}

    def preflight(self, todo: list[Entry], resources: dict[str, dict[str, Any]]) -> None:
        """What would refuse the run, checked before anything is claimed: each executor's own check, and the
        cells' input checks on one composed config per distinct set of the settings they read."""
        group = self.spec.settings.resources
        by_executor: dict[str, dict[str, dict[str, Any]]] = {}
        for e in todo:
            label = f"{group}={self.spec.cell_choices(e.cell)[group]}" if group else "this machine"
            by_executor.setdefault(str(resources[e.cell.name].get("executor", LOCAL)), {})[label] = \
                resources[e.cell.name]
        unknown = sorted(set(by_executor) - set(self.executors))
        if unknown:
            raise InputError(f"{group}.executor={unknown[0]!r} (in {', '.join(sorted(by_executor[unknown[0]]))}) "
                             f"is not an executor: choose one of {', '.join(self.executors)} (grid.executors)")
        for name, executor in self.executors.items():
            executor.check(by_executor.get(name, {}))
        if self.spec.settings.command is not None and todo:
            self.check_command(todo[0])
        if not self.spec.settings.preflight:
            return
        keys = set(self.spec.settings.preflight_keys)
        representatives: dict[tuple, Entry] = {}
        for e in todo:
            signature = tuple((k, v) for k, v in e.cell.axes + e.cell.extra + e.cell.run if k.split(".")[0] in keys)
            representatives.setdefault(signature, e)
        check = load(self.spec.settings.preflight)
        warnings: dict[str, None] = {}
        for e in representatives.values():
            cfg = self.spec.compose(e.cell)
            cell_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k not in ("hydra", "grid")])
            warnings.update(dict.fromkeys(check(cell_cfg) or []))
        for warning in warnings:
            self.console.print(f"[yellow]warning: {warning}[/]")

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

    def check_command(self, entry: Entry) -> None:
        """A command that cannot be written out (a key its interpolation names is not there) is refused before
        anything launches, on one cell's composed config, rather than failing every cell."""
        hydra = HydraConfig.instance()
        sweep = hydra.cfg
        cfg = self.spec.compose(entry.cell)
        try:
            hydra.set_config(cfg)  # `${hydra:runtime.cwd}` resolves as in the cell's process
            command_line(cfg, self.spec.settings)
        except OmegaConfBaseException as exc:
            raise InputError(f"grid.command cannot be written out for cell {entry.cell.name}: "
                             f"{str(exc).strip().splitlines()[0]}") from None
        finally:
            hydra.cfg = sweep

    def __call__(self) -> SweepOutcome:
        self.adopt()
        todo = [e for e in self.entries if e.runs]
        outcome = self.outcome
        outcome.total = len(self.entries)
        outcome.done = sum(1 for e in self.entries if not e.runs and e.state.state not in IN_FLIGHT)
        outcome.in_flight = sum(1 for e in self.entries if not e.runs and e.state.state in IN_FLIGHT)
        resources = self.resources(todo)
        self.preflight(todo, resources)
        self.console.print(f"experiment {self.spec.experiment}: {plural(len(self.entries), 'cell')}, "
                           f"{len(todo)} to run, {outcome.done} done, {outcome.in_flight} queued or running")
        by_executor: dict[str, list[Entry]] = {}
        for e in todo:
            by_executor.setdefault(resources[e.cell.name].get("executor", LOCAL), []).append(e)
        settings = self.spec.settings
        events = ConsoleEvents(self.console, outcome, headline(settings), settings.report.warnings)
        # Scheduled cells first: they queue on the cluster while the local ones run here.
        for name in sorted(by_executor, key=lambda n: self.executors[n].blocking):
            executor, members = self.executors[name], by_executor[name]
            claim = self.claimers(name)
            if executor.blocking:
                for index, e in enumerate(members, 1):
                    events.counters[e.cell.name] = f"[{index}/{len(members)}]"
                    self._launch(executor, [claim(e, resources[e.cell.name])], events)
            else:
                self._launch(executor, [claim(e, resources[e.cell.name]) for e in members], events)
        return outcome

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
