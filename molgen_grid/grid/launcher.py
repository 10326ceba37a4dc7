"""The project's Hydra launcher: a thin adapter from Hydra's sweep to plan -> claim -> executor.

Hydra's sweeper expands the overrides into cells; this launcher hands them to the study's sweep (study_sweep.py)
or, under another project's own `@hydra.main` app, to the app's (app/sweep.py). Both plan the same way (each
cell's state, whether it runs and why) and carry out the action the same way: `status` and `dry_run` show the
plan, `run` claims and launches what needs running through the same executors (run.py, executors/), and with
`wait` follows the grid to its end (follow.py), `watch` follows it launching nothing, `cancel` stops its jobs
(cancel.py); a study also has `report`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from molgen_grid.errors import InputError
from molgen_grid.grid.app import is_app

if TYPE_CHECKING:
    from molgen_grid.grid.run import SweepOutcome

ACTIONS = ("run", "status", "dry_run", "report", "accept", "cancel", "watch", "logs")


@dataclass
class GridLauncherConf:
    _target_: str = "hydra_plugins.molgen_grid_plugins.GridLauncher"
    #: run (the default), status, dry_run, report, accept (record the current fingerprint of stale cells), cancel
    #: (the grid's queued, running and held jobs), watch (follow the grid, launching nothing) or logs (one cell's
    #: output, cell_logs.py).
    action: str = "run"
    #: Cell names to rerun even if done; ["*"] reruns every cell of the grid.
    force: List[str] = field(default_factory=list)
    #: With action=accept: the cells to accept (names or parts of names, as for force); empty: every stale cell.
    accept: List[str] = field(default_factory=list)
    #: With action=cancel: the cells to cancel (names or parts of names, as for force); empty: the whole grid.
    cancel: List[str] = field(default_factory=list)
    #: With action=logs: the cell (a name or a part of one, as for force) whose attempt's output is shown; with
    #: `follow`, followed while it runs; `attempt`: which one (1 = the first; null: the current one).
    logs: Optional[str] = None
    follow: bool = False
    attempt: Optional[int] = None
    #: With action=status: print JSON instead of a table.
    json: bool = False
    #: With action=status: list every cell (default: a grid of over 50 cells lists those that need attention).
    all: bool = False
    #: After submitting to Slurm, follow the grid's cells to the end.
    wait: bool = False
    #: Stop launching after the first cell of this run that fails; the cells not launched stay as they were.
    fail_fast: bool = False
    #: With action=report: comparisons along one axis, `AXIS=A:B` each.
    compare: List[str] = field(default_factory=list)
    #: With action=report: the two settings of the heatmap (default: the two that vary most).
    heatmap: List[str] = field(default_factory=list)
    #: With action=report: hand this experiment's plan back for one report of several experiments
    #: (report/together.py); the front door sets it for `--report --experiment a,b`.
    together: bool = False
    #: Test mode (`--limit N`): the study's `grid.limit_key` set to N in every cell; reports go to
    #: artifacts/<experiment>/limit-N/.
    limit: Optional[int] = None
    #: App mode (docs/hydra-apps.md): where an app's jobs run and what they ask for, in the keys of a study's
    #: resource option: executor (local or slurm); time_min (the job's time limit, on Slurm or here); Slurm's
    #: partition (null: the cluster's default), gres, cpus_per_task, mem_gb, account, qos, constraint,
    #: additional (more sbatch parameters, long names without --) and setup (shell lines run before the job).
    #: A study's cells take theirs from its resource group instead.
    executor: str = "local"
    time_min: int = 60
    partition: Optional[str] = None
    gres: Optional[str] = None
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[float] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    additional: Dict[str, Any] = field(default_factory=dict)
    setup: List[str] = field(default_factory=list)
    array_parallelism: int = 256
    #: App mode: a config group of the app whose option may set, per job, its `executor` and any key above.
    resources: Optional[str] = None


class GridLauncher(Launcher):
    def __init__(self, action: str = "run", force: Sequence[str] = (), accept: Sequence[str] = (), json: bool = False,
                 all: bool = False, wait: bool = False, fail_fast: bool = False, cancel: Sequence[str] = (),
                 logs: str | None = None, follow: bool = False, attempt: int | None = None,
                 compare: Sequence[str] = (), heatmap: Sequence[str] = (), limit: int | None = None,
                 together: bool = False, resources: str | None = None, array_parallelism: int = 256,
                 **job_resources: Any) -> None:
        if action not in ACTIONS:
            raise InputError(f"unknown launcher action {action!r}: choose one of {', '.join(ACTIONS)}")
        self.action = action
        self.force = list(force)
        self.accept = list(accept)
        self.cancel = list(cancel)
        self.json = json
        self.all = all
        self.wait = wait
        self.fail_fast = fail_fast
        self.logs, self.follow, self.attempt = logs, follow, attempt
        self.compare = list(compare)
        self.heatmap = list(heatmap)
        self.together = together
        self.limit = limit
        self.resources = resources
        self.array_parallelism = array_parallelism
        self.job_resources = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v
                              for k, v in job_resources.items()}
        # imported here, not above: Hydra loads this module with its plugins in every cell's process too, which
        # needs no console (rich)
        from molgen_grid.grid.console import make_console

        self.console = make_console()
        self.outcome: SweepOutcome | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config
        if is_app(config, task_function):  # the sweeper checks an app's jobs once per option set, not per job
            from molgen_grid.grid.app.checking_loader import share_checks

            self.hydra_context, self.option_sets = share_checks(hydra_context, config, self.resources)

    @property
    def cwd(self) -> Path:
        return Path(self.config.hydra.runtime.cwd)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        if is_app(self.config, self.task_function):  # another project's own @hydra.main app: its function is the job
            from molgen_grid.grid.app.sweep import AppSweep

            sweep: Any = AppSweep(self, self.task_function)
            return sweep.launch(job_overrides, initial_job_idx)
        from molgen_grid.grid.study_sweep import StudySweep

        return StudySweep(self).launch(job_overrides)
