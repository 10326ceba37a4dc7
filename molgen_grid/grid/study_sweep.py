"""A study's sweep: its grid planned from the override strings (never one composition per cell), then shown,
reported or run through the one pipeline (claim.py, run.py, executors/), each cell's work a callable or a command
(task/) that its own process composes and runs (worker.py).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from molgen_grid.errors import InputError
from molgen_grid.grid.accept import accept
from molgen_grid.grid.cancel import cancel
from molgen_grid.grid.cell_logs import one_cell, show_logs
from molgen_grid.grid.claim import Claimer
from molgen_grid.grid.estimate import of_study
from molgen_grid.grid.executors.base import executors as load_executors
from molgen_grid.grid.figures import headline
from molgen_grid.grid.fingerprint import Current
from molgen_grid.grid.follow import follow
from molgen_grid.grid.forced import named_cells
from molgen_grid.grid.gitinfo import provenance as code_provenance
from molgen_grid.grid.paths import check_writable, checked_dir
from molgen_grid.grid.plan import STALE_POLICIES, Entry, make_plan, under
from molgen_grid.grid.preflight import StudyChecks
from molgen_grid.grid.retry import requests
from molgen_grid.grid.run import ConsoleEvents, Runner
from molgen_grid.grid.settings import code_folders
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.status import print_plan, print_status, status_json, test_mode_hint
from molgen_grid.grid.store import safe_component
from molgen_grid.grid.task.base import CellWork
from molgen_grid.grid.task.command import CommandWork
from molgen_grid.grid.task.function import FunctionWork
from molgen_grid.grid.task.study import StudyConfig
from molgen_grid.grid.watch import watch
from molgen_grid.grid.worker import CellJob
from molgen_grid.words import plural

ALL_CELLS = "*"
#: Hydra overrides that steer this launcher or the sweeper, not a cell's composition.
_SWEEP_ONLY = ("hydra.launcher.", "hydra.sweeper.")
#: Overrides of the engine's settings (`grid.stale=keep`): the same for every cell of a sweep.
ENGINE_SETTINGS = "grid."


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
        cells = spec.cells(job_overrides)
        if launcher.force and launcher.force != [ALL_CELLS]:
            cells = named_cells(spec, launcher.force, cells, root)
        forced = {c.name for c in cells} if launcher.force else set()
        if launcher.action == "accept" and launcher.accept:
            cells = named_cells(spec, launcher.accept, cells, root)
        if launcher.action == "cancel" and launcher.cancel:
            cells = named_cells(spec, launcher.cancel, cells, root)
        elif launcher.action == "logs":
            cells = [one_cell(spec, launcher.logs, cells, root)]
        executors = load_executors(settings, root)
        current = self.current(settings)
        attempts = settings.retry.max_attempts
        entries, views = make_plan(under(root, cells, spec.fingerprint_config), forced, executors, current,
                                   settings.stale, attempts)
        current.hashes.save()

        def replan() -> list[Entry]:
            return make_plan(under(root, cells, spec.fingerprint_config), set(), executors, current, settings.stale,
                             attempts)[0]

        partial = next((v.partial for v in views.values() if v.partial), None)
        if partial and not launcher.json:
            self.console.print(f"[yellow]partial view: {partial}[/]")
        if launcher.action == "status":
            if launcher.json:
                print(status_json(spec.experiment, entries, partial))
            else:
                hint = None if launcher.limit else test_mode_hint(spec, entries, root)
                print_status(self.console, spec, entries, hint)
                self.say(time_left(spec, root, executors, entries, accuracy=True))
                if launcher.wait:
                    self.console.print(f"sweep {spec.experiment}: {follow(self.console, replan)}")
        elif launcher.action == "dry_run":
            print_plan(self.console, spec.experiment, entries, requests(entries, executors, spec.resources))
            self.say(time_left(spec, root, executors, entries))
        elif launcher.action == "logs":
            show_logs(entries[0], launcher.logs, launcher.attempt, launcher.follow, replan, executors)
        elif launcher.action == "accept":
            count = accept(entries, current, bool(launcher.accept),
                           lambda line: self.console.print(line, markup=False, highlight=False))
            self.console.print(f"experiment {spec.experiment}: {plural(count, 'stale cell')} accepted")
        elif launcher.action == "report" and launcher.together:
            return [(self, spec, entries)]
        elif launcher.action == "cancel":
            count = cancel(entries, executors, bool(launcher.cancel),
                           lambda line: self.console.print(line, markup=False, highlight=False))
            self.console.print(f"experiment {spec.experiment}: {plural(count, 'cell')} cancelled")
        elif launcher.action == "watch":
            watch(self.console, f"experiment {spec.experiment}", replan)
        elif launcher.action == "report":
            self.report(spec, entries)
            hint = None if launcher.limit else test_mode_hint(spec, entries, root)
            if hint:
                self.console.print(f"{hint}; their report: --report --limit N")
        else:
            if any(e.runs for e in entries):
                check_writable(root)
            settings_given = [o for o in (job_overrides[0] if job_overrides else [])
                              if o.lstrip("+~").startswith(ENGINE_SETTINGS)]
            self.run(spec, entries, executors, views, current, forced, replan, settings_given, root)
        return []

    def say(self, lines: list[str]) -> None:
        for line in lines:
            self.console.print(line, markup=False, highlight=False)

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
            return other, make_plan(under(root, grid_cells(other), other.fingerprint_config), set(), executors,
                                    self.current(other.settings), other.settings.stale)[0]

        launcher = self.launcher
        report(self.console, spec, entries, self.cwd, self.artifacts, launcher.compare, launcher.heatmap,
               launcher.limit,
               loader.get_group_options("experiment") or [spec.experiment], plan)

    def run(self, spec: GridSpec, entries: list[Entry], executors: dict, views: dict, current: Current,
            forced: set[str], replan: Callable[[], list[Entry]], settings_given: list[str], root: Path) -> None:
        """Claim and launch what needs running. `settings_given`: the engine settings the command line set
        (`grid.versions=...`), which each cell's process composes too, so that it reads what the plan read."""
        provenance = code_provenance(self.cwd)
        sources = [s for s in self.config.hydra.runtime.config_sources if s.provider == "main"]
        conf_dir = str(sources[0].path).removeprefix("file://")
        hydra_overrides = [o for o in spec.hydra_overrides if not o.startswith(_SWEEP_ONLY)]
        base_overrides = [o for o in spec.base_overrides if not o.startswith(_SWEEP_ONLY)] + settings_given

        def make_job(executor: str) -> Callable[[Entry, str], CellJob]:
            def job(entry: Entry, attempt: str) -> CellJob:
                study = StudyConfig(conf_dir=conf_dir, config_name=spec.config_name, base_overrides=base_overrides,
                                    overrides=entry.cell.overrides, run_overrides=entry.cell.run_overrides,
                                    project_dir=str(self.cwd), cell=entry.cell, experiment=spec.experiment,
                                    hydra_overrides=hydra_overrides)
                work: CellWork = CommandWork(study) if spec.settings.command is not None else FunctionWork(study)
                return CellJob(cell_dir=str(entry.store.dir), experiment=spec.experiment, cell=entry.cell.name,
                               attempt=attempt, axes=dict(entry.cell.axes), overrides=entry.cell.overrides,
                               work=work, project_dir=str(self.cwd), executor=executor, provenance=provenance)
            return job

        estimator = of_study(spec, root, executors).read(entries)

        def claimer(name: str) -> Claimer:
            return Claimer(name, views, lambda e, summary: current.stale(summary.get("fingerprint"), e.config_part),
                           make_job(name), forced, spec.settings.stale, spec.settings.retry.max_attempts,
                           lambda e: estimator.median_of(e.cell))

        settings = spec.settings
        group = settings.resources
        runner = Runner(
            f"experiment {spec.experiment}", "cell", entries, executors, claimer, self.console,
            resources_of=lambda e: spec.resources(e.cell),
            label_of=lambda e: f"{group}={spec.cell_choices(e.cell)[group]}" if group else "this machine",
            where=str(group), executors_from="grid.executors",
            events=ConsoleEvents(self.console, headline(settings), settings.report.warnings, left=estimator.finished),
            check=StudyChecks(spec, self.console), fail_fast=self.launcher.fail_fast)
        self.launcher.outcome = runner.outcome
        outcome = runner()
        if self.launcher.wait:
            ended = follow(self.console, replan, estimate=lambda now: time_left(spec, root, executors, now))
        else:
            ended = outcome.line()
        accuracy = of_study(spec, root, executors).scan(entries).accuracy()
        self.say([accuracy] if accuracy else [])
        self.console.print(f"sweep {spec.experiment}: {ended}")


def time_left(spec: GridSpec, root: Path, executors: dict, entries: list[Entry], accuracy: bool = False) -> list[str]:
    """The lines of time left of the grid's cells to run or in flight, and how far off earlier estimates were."""
    estimator = of_study(spec, root, executors).read(entries)
    off = estimator.accuracy() if accuracy else None
    return estimator.lines() + ([off] if off else [])


def on_import_path(settings: Any, project: Path) -> None:
    """The study's code importable here as in its cells: the pinned folders first, then the project."""
    for folder in reversed([str((project / f).resolve()) for f in code_folders(settings)] + [str(project)]):
        if folder not in sys.path:
            sys.path.insert(0, folder)
