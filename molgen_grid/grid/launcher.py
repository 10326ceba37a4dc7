"""The project's Hydra launcher: a thin adapter from Hydra's sweep to plan -> claim -> executor.

Hydra's sweeper expands the overrides into cells; this launcher plans them (each cell's state, whether it runs
and why) and then carries out the action: `status` and `dry_run` show the plan, `report` turns the finished
cells into tables and plots, `run` claims and launches what needs running (runner in run.py, executors in
executors/), and with `wait` follows the grid to its end (follow.py). Every front door shares this one
expansion of the grid.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from molgen_grid.errors import InputError
from molgen_grid.grid.app import is_app
from molgen_grid.grid.app.launcher import AppLauncher
from molgen_grid.grid.app.slurm import SlurmKeys
from molgen_grid.grid.claim import Claimer
from molgen_grid.grid.console import make_console
from molgen_grid.grid.executors.base import executors as load_executors
from molgen_grid.grid.fingerprint import Current
from molgen_grid.grid.follow import follow
from molgen_grid.grid.gitinfo import git_provenance
from molgen_grid.grid.paths import check_writable, checked_dir
from molgen_grid.grid.plan import STALE_POLICIES, Entry, make_plan
from molgen_grid.grid.run import Runner, SweepOutcome
from molgen_grid.grid.settings import code_folders
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.status import print_plan, print_status, status_json, test_mode_hint
from molgen_grid.grid.store import safe_component
from molgen_grid.grid.worker import CellJob

ACTIONS = ("run", "status", "dry_run", "report")
ALL_CELLS = "*"
#: Hydra overrides that steer this launcher or the sweeper, not a cell's composition.
_SWEEP_ONLY = ("hydra.launcher.", "hydra.sweeper.")
#: Overrides of the engine's settings (`grid.stale=keep`): the same for every cell of a sweep.
ENGINE_SETTINGS = "grid."


@dataclass
class GridLauncherConf:
    _target_: str = "hydra_plugins.molgen_grid_plugins.GridLauncher"
    #: run (the default), status, dry_run or report.
    action: str = "run"
    #: Cell names to rerun even if done; ["*"] reruns every cell of the grid.
    force: List[str] = field(default_factory=list)
    #: With action=status: print JSON instead of a table.
    json: bool = False
    #: After submitting to Slurm, follow the grid's cells to the end.
    wait: bool = False
    #: With action=report: comparisons along one axis, `AXIS=A:B` each.
    compare: List[str] = field(default_factory=list)
    #: With action=report: the two settings of the heatmap (default: the two that vary most).
    heatmap: List[str] = field(default_factory=list)
    #: Test mode (`--limit N`): the study's `grid.limit_key` set to N in every cell; reports go to
    #: artifacts/<experiment>/limit-N/.
    limit: Optional[int] = None
    #: App mode (docs/hydra-apps.md): where an app's jobs run (local or slurm) and, in hydra-submitit-launcher's
    #: names, what Slurm is asked for (timeout_min also limits a local job). A study's cells take theirs from its
    #: resource group instead.
    executor: str = "local"
    partition: Optional[str] = None
    gres: Optional[str] = None
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[float] = None
    timeout_min: int = 60
    array_parallelism: int = 256
    #: App mode: a config group of the app whose option may set, per job, its `executor` and any key above.
    resources: Optional[str] = None


class GridLauncher(Launcher):
    def __init__(self, action: str = "run", force: Sequence[str] = (), json: bool = False, wait: bool = False,
                 compare: Sequence[str] = (), heatmap: Sequence[str] = (), limit: int | None = None,
                 executor: str = "local", resources: str | None = None, **slurm: Any) -> None:
        if action not in ACTIONS:
            raise InputError(f"unknown launcher action {action!r}: choose one of {', '.join(ACTIONS)}")
        self.action = action
        self.force = list(force)
        self.json = json
        self.wait = wait
        self.compare = list(compare)
        self.heatmap = list(heatmap)
        self.limit = limit
        self.executor = executor
        self.resources = resources
        self.slurm = SlurmKeys(**slurm)
        self.console = make_console()
        self.outcome: SweepOutcome | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config

    @property
    def cwd(self) -> Path:
        return Path(self.config.hydra.runtime.cwd)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        if is_app(self.config, self.task_function):  # another project's own @hydra.main app: its task function is the job
            return AppLauncher(self.hydra_context, self.task_function, self.config, self.action, self.force,
                               self.json, self.console, self.executor, self.slurm, self.wait,
                               self.resources).launch(
                job_overrides, initial_job_idx)
        spec = GridSpec.of_sweep(self.hydra_context.config_loader, self.config)
        spec.check_base()
        settings = spec.settings
        if settings.stale not in STALE_POLICIES:
            raise InputError(f"grid.stale={settings.stale!r}: choose one of {', '.join(STALE_POLICIES)}")
        results = checked_dir(self.cwd, settings.results_dir, "grid.results_dir")
        self.artifacts = checked_dir(self.cwd, settings.artifacts_dir, "grid.artifacts_dir", apart_from=results)
        self.results = results
        on_import_path(settings, self.cwd)
        root = results / safe_component(spec.experiment, "experiment name")
        cells = spec.cells(job_overrides)
        if self.force and self.force != [ALL_CELLS]:
            cells = spec.resolve_names(self.force, cells, root)
        forced = {c.name for c in cells} if self.force else set()
        executors = load_executors(settings, root)
        current = self.current(settings)
        entries, views = make_plan(spec, cells, root, forced, executors, current, settings.stale)
        current.hashes.save()

        def replan() -> list[Entry]:
            return make_plan(spec, cells, root, set(), executors, current, settings.stale)[0]

        partial = next((v.partial for v in views.values() if v.partial), None)
        if partial and not self.json:
            self.console.print(f"[yellow]partial view: {partial}[/]")
        if self.action == "status":
            if self.json:
                print(status_json(spec.experiment, entries, partial))
            else:
                print_status(self.console, spec, entries, None if self.limit else test_mode_hint(spec, entries, root))
        elif self.action == "dry_run":
            print_plan(self.console, spec.experiment, entries)
        elif self.action == "report":
            self.report(spec, entries)
            hint = None if self.limit else test_mode_hint(spec, entries, root)
            if hint:
                self.console.print(f"{hint}; their report: --report --limit N")
        else:
            if any(e.runs for e in entries):
                check_writable(root)
            settings_given = [o for o in (job_overrides[0] if job_overrides else [])
                              if o.lstrip("+~").startswith(ENGINE_SETTINGS)]
            self.run(spec, entries, executors, views, current, forced, replan, settings_given)
        return []

    def current(self, settings: Any) -> Current:
        """The parts of the fingerprint shared by every cell of an experiment, computed at most once each; a
        task that cannot be found is one line."""
        try:
            current = Current(settings, self.cwd)
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
            return other, make_plan(other, grid_cells(other), root, set(), executors, self.current(other.settings),
                                    other.settings.stale)[0]

        report(self.console, spec, entries, self.cwd, self.artifacts, self.compare, self.heatmap, self.limit,
               loader.get_group_options("experiment") or [spec.experiment], plan)

    def run(self, spec: GridSpec, entries: list[Entry], executors: dict, views: dict, current: Current,
            forced: set[str], replan: Callable[[], list[Entry]], settings_given: list[str]) -> None:
        """Claim and launch what needs running. `settings_given`: the engine settings the command line set
        (`grid.versions=...`), which each cell's process composes too, so that it reads what the plan read."""
        provenance = git_provenance(Path(__file__).resolve().parents[2])
        sources = [s for s in self.config.hydra.runtime.config_sources if s.provider == "main"]
        conf_dir = str(sources[0].path).removeprefix("file://")
        base_overrides = [o for o in spec.base_overrides if not o.startswith(_SWEEP_ONLY)] + settings_given

        def make_job(executor: str) -> Callable[[Entry, str], CellJob]:
            def job(entry: Entry, attempt: str) -> CellJob:
                return CellJob(
                    cell_dir=str(entry.store.dir), experiment=spec.experiment, cell=entry.cell.name, attempt=attempt,
                    axes=dict(entry.cell.axes), overrides=entry.cell.overrides,
                    run_overrides=entry.cell.run_overrides, conf_dir=conf_dir, config_name=spec.config_name,
                    base_overrides=base_overrides, project_dir=str(self.cwd),
                    fingerprint_config=entry.config_part, executor=executor, provenance=provenance,
                )
            return job

        def claimer(name: str) -> Claimer:
            return Claimer(name, views, lambda e, summary: current.stale(summary.get("fingerprint"), e.config_part),
                           make_job(name), forced, spec.settings.stale)

        runner = Runner(spec, entries, executors, claimer, self.console)
        self.outcome = runner.outcome
        outcome = runner()
        if self.wait:
            self.console.print(f"sweep {spec.experiment}: {follow(self.console, replan)}")
        else:
            self.console.print(f"sweep {spec.experiment}: {outcome.line()}")


def on_import_path(settings: Any, project: Path) -> None:
    """The study's code importable here as in its cells: the pinned folders first, then the project."""
    for folder in reversed([str((project / f).resolve()) for f in code_folders(settings)] + [str(project)]):
        if folder not in sys.path:
            sys.path.insert(0, folder)
