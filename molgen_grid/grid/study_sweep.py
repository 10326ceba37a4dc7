"""A study's sweep: its grid planned from the override strings (never one composition per cell), then shown,
reported or run through the one pipeline (claim.py, run.py, executors/), each cell's work a callable or a command
(task/) that its own process composes and runs (worker.py).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from molgen_grid.errors import InputError
from molgen_grid.grid.cell_logs import one_cell
from molgen_grid.grid.cells import Cell
from molgen_grid.grid.claim import Claimer
from molgen_grid.grid.collector import paused
from molgen_grid.grid.estimate import of_study
from molgen_grid.grid.executors.base import executors as load_executors
from molgen_grid.grid.figures import headline
from molgen_grid.grid.fingerprint import Current
from molgen_grid.grid.follow import follow
from molgen_grid.grid.forced import named_cells
from molgen_grid.grid.gitinfo import provenance as code_provenance
from molgen_grid.grid.paths import check_writable, checked_dir
from molgen_grid.grid.plan import STALE_POLICIES, Entry, existing, make_plan, under
from molgen_grid.grid.poll import Replan
from molgen_grid.grid.preflight import StudyChecks
from molgen_grid.grid.run import ConsoleEvents, Runner
from molgen_grid.grid.settings import code_folders
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.study_actions import SHOWN, say, time_left
from molgen_grid.grid.store import safe_component
from molgen_grid.grid.task.base import CellWork
from molgen_grid.grid.task.command import CommandWork
from molgen_grid.grid.task.function import FunctionWork
from molgen_grid.grid.task.study import StudyConfig
from molgen_grid.grid.top_up import TopUp
from molgen_grid.grid.worker import CellJob

ALL_CELLS = "*"
#: Hydra overrides that steer this launcher or the sweeper, not a cell's composition.
_SWEEP_ONLY = ("hydra.launcher.", "hydra.sweeper.")
#: Overrides of the engine's settings (`grid.stale=keep`): the same for every cell of a sweep.
ENGINE_SETTINGS = "grid."
#: The actions that ask a scheduler how many more cells it takes (a run, and the table and dry run that say how
#: many would wait): its limits are asked as their plan begins (`Executor.prefetch`).
ADMITTING = ("run", "status", "dry_run")


@dataclass
class StudyPlan:
    """A sweep's grid as planned: what every action shows, or runs."""

    spec: GridSpec
    root: Path
    entries: list[Entry]
    views: dict[str, Any]
    executors: dict[str, Any]
    current: Current
    forced: set[str]
    #: Some of its cells planned again (each one's state now), for following them.
    replan: Replan


class StudySweep:
    """One sweep of a study, for the launcher that Hydra built (its action, force, wait, report keys)."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher
        self.console = launcher.console
        self.config = launcher.config
        self.cwd: Path = launcher.cwd
        self.hydra_context = launcher.hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]]) -> list[Any]:
        """Carry out the launcher's action; with `together` (a report of several experiments), hand back this
        experiment's plan instead of reporting it alone."""
        launcher = self.launcher
        with paused():
            plan = self.plan(job_overrides)
        partial = next((v.partial for v in plan.views.values() if v.partial), None)
        if partial and not launcher.json:
            self.console.print(f"[yellow]partial view: {partial}[/]")
        if launcher.action == "report" and launcher.together:
            return [(self, plan.spec, plan.entries)]
        if launcher.action in SHOWN:
            SHOWN[launcher.action](self, plan, partial)
            return []
        if any(e.runs for e in plan.entries):
            check_writable(plan.root)
        settings_given = [o for o in (job_overrides[0] if job_overrides else [])
                          if o.lstrip("+~").startswith(ENGINE_SETTINGS)]
        self.run(plan, settings_given)
        return []

    def plan(self, job_overrides: Sequence[Sequence[str]]) -> StudyPlan:
        """The grid's cells (those the action names), each cell's state and whether it runs."""
        launcher = self.launcher
        spec = GridSpec.of_sweep(self.hydra_context.config_loader, self.config)
        spec.overrides.check_base(spec.experiment)
        settings = spec.settings
        if settings.stale not in STALE_POLICIES:
            raise InputError(f"grid.stale={settings.stale!r}: choose one of {', '.join(STALE_POLICIES)}")
        results = checked_dir(self.cwd, settings.results_dir, "grid.results_dir")
        self.artifacts = checked_dir(self.cwd, settings.artifacts_dir, "grid.artifacts_dir", apart_from=results)
        self.results = results
        on_import_path(settings, self.cwd)
        root = results / safe_component(spec.experiment, "experiment name")
        executors = load_executors(settings, root)
        listed = existing(root)  # read once, by the plan too
        chosen = spec.namer.chosen(job_overrides)
        if launcher.action in ADMITTING and not launcher.json and len(listed) < len(job_overrides):
            # some cell has no folder yet, so it runs: its scheduler's limits will be asked (a finished grid's
            # status asks none)
            for name in spec.executors_named(chosen) & executors.keys():
                executors[name].prefetch()
        cells = spec.cells(job_overrides, chosen)
        if launcher.force and launcher.force != [ALL_CELLS]:
            cells = named_cells(spec, launcher.force, cells, root)
        forced = {c.name for c in cells} if launcher.force else set()
        named = {"accept": launcher.accept, "cancel": launcher.cancel}.get(launcher.action)
        if named:
            cells = named_cells(spec, named, cells, root)
        elif launcher.action == "logs":
            cells = [one_cell(spec, launcher.logs, cells, root)]
        current = self.current(settings)

        def planned(some: list[Cell], forcing: set[str], views: Any = None,
                    folders: dict[Path, set[str]] | None = None) -> tuple[list[Entry], dict]:
            return make_plan(under(root, some, spec.config_part), forcing, executors, current,
                             settings.stale, settings.retry.max_attempts, views, folders)

        entries, views = planned(cells, forced, folders={root: listed})
        current.hashes.save()
        return StudyPlan(spec, root, entries, views, executors, current, forced,
                         lambda again, known: planned([e.cell for e in again], set(), known))

    def current(self, settings: Any) -> Current:
        """The parts of the fingerprint shared by every cell of an experiment, computed at most once each; a
        task that cannot be found is one line."""
        try:
            current = Current.of_study(settings, self.cwd)
            current.code  # noqa: B018 - fails here, in one line, rather than in the first done cell's state
        except ValueError as exc:
            raise InputError(str(exc)) from None
        return current

    def report(self, spec: GridSpec, entries: list[Entry]) -> None:
        # pandas, scipy and matplotlib: only for reports, never for a status
        from molgen_grid.grid.report import report
        from molgen_grid.grid.report.artifacts import grid_cells

        loader = self.hydra_context.config_loader

        def plan(name: str) -> tuple[GridSpec, list[Entry]]:
            """Another experiment's declared grid and its states (full runs), for the map of experiments."""
            other = GridSpec(loader, spec.config_name, name, spec.hydra_overrides)
            root = self.results / name
            executors = load_executors(other.settings, root)
            return other, make_plan(under(root, grid_cells(other), other.config_part), set(), executors,
                                    self.current(other.settings), other.settings.stale)[0]

        launcher = self.launcher
        report(self.console, spec, entries, self.cwd, self.artifacts, launcher.compare, launcher.heatmap,
               launcher.limit,
               loader.get_group_options("experiment") or [spec.experiment], plan)

    def run(self, plan: StudyPlan, settings_given: list[str]) -> None:
        """Claim and launch what needs running. `settings_given`: the engine settings the command line set
        (`grid.versions=...`), which each cell's process composes too, so that it reads what the plan read."""
        spec, root, entries, executors, current = plan.spec, plan.root, plan.entries, plan.executors, plan.current
        sources = [s for s in self.config.hydra.runtime.config_sources if s.provider == "main"]
        make_job = cell_jobs(spec, self.cwd, str(sources[0].path).removeprefix("file://"), settings_given)
        estimator = of_study(spec, root, executors).read(entries)

        def claimer(name: str) -> Claimer:
            return Claimer(name, plan.views, lambda e, summary: current.stale(summary.get("fingerprint"),
                                                                               e.config_part),
                           make_job(name), plan.forced, spec.settings.stale, spec.settings.retry.max_attempts,
                           lambda e: estimator.median_of(e.cell))

        settings = spec.settings
        group = settings.resources

        def runner_of(entries: list[Entry]) -> Runner:
            return Runner(
                f"experiment {spec.experiment}", "cell", entries, executors, claimer, self.console,
                resources_of=lambda e: spec.resources(e.cell),
                label_of=lambda e: f"{group}={spec.option_in(e.cell, group)}" if group else "this machine",
                where=str(group), executors_from="grid.executors",
                events=ConsoleEvents(self.console, headline(settings), settings.report.warnings,
                                     left=estimator.finished),
                check=StudyChecks(spec, self.console), fail_fast=self.launcher.fail_fast,
                order=interleaved(spec, settings.interleave) if settings.interleave else None)

        runner = runner_of(entries)
        self.launcher.outcome = runner.outcome
        outcome = runner()
        if self.launcher.wait:
            launched = any(e.runs for e in entries)  # else the plan is the grid as it is now
            ended = follow(self.console, entries, plan.replan, executors, None if launched else plan.views,
                           lambda now: time_left(spec, root, executors, now),
                           TopUp(lambda now: runner_of(now).submit_more(), outcome.waiting))
        else:
            ended = outcome.line()
        if outcome.ran or self.launcher.wait:  # else no cell finished in this command: nothing new to say
            accuracy = of_study(spec, root, executors).scan(entries).accuracy()
            say(self.console, [accuracy] if accuracy else [])
        self.console.print(f"sweep {spec.experiment}: {ended}")


def cell_jobs(spec: GridSpec, cwd: Path, conf_dir: str,
              settings_given: list[str]) -> Callable[[str], Callable[[Entry, str], CellJob]]:
    """For each executor, what its claims launch: a cell's job, which composes the cell's config in its own
    process from the study's config folder and the sweep's overrides (`settings_given`: the engine settings the
    command line set)."""
    provenance = code_provenance(cwd)
    files_overrides = [o for o in spec.base_overrides if not o.startswith(_SWEEP_ONLY)]
    base_overrides = files_overrides + settings_given
    work_of = CommandWork if spec.settings.command is not None else FunctionWork  # read once, not per cell

    def make_job(executor: str) -> Callable[[Entry, str], CellJob]:
        def job(entry: Entry, attempt: str) -> CellJob:
            study = StudyConfig(conf_dir=conf_dir, config_name=spec.config_name, base_overrides=base_overrides,
                                overrides=entry.cell.overrides, run_overrides=entry.cell.run_overrides,
                                project_dir=str(cwd), cell=entry.cell, files_overrides=files_overrides)
            work: CellWork = work_of(study)
            return CellJob(cell_dir=str(entry.store.dir), experiment=spec.experiment, cell=entry.cell.name,
                           attempt=attempt, axes=dict(entry.cell.axes), overrides=entry.cell.overrides,
                           work=work, project_dir=str(cwd), executor=executor, provenance=provenance)
        return job
    return make_job


def interleaved(spec: GridSpec, key: str) -> Callable[[Entry], tuple[int, float, str]]:
    """The launch order by one setting's value (its default where a cell does not set it): numbers by value,
    before any other value by its text."""
    def order(entry: Entry) -> tuple[int, float, str]:
        value = spec.settings_of(entry.cell, [key])[key]
        try:
            return 0, float(value), ""
        except (TypeError, ValueError):
            return 1, 0.0, str(value)
    return order


def on_import_path(settings: Any, project: Path) -> None:
    """The study's code importable here as in its cells: the pinned folders first, then the project."""
    for folder in reversed([str((project / f).resolve()) for f in code_folders(settings)] + [str(project)]):
        if folder not in sys.path:
            sys.path.insert(0, folder)
