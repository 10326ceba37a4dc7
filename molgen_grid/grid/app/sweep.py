"""An app's multirun through the engine's one pipeline: its jobs planned as cells, then shown, or claimed and run
by the same executors as a study's cells, and every job handed back to Hydra's sweeper.

Each job's state is read from its directory and its executor's view of its last attempt (plan.py, state.py); a
job runs when it is missing, failed, interrupted, stale or forced. Locally each runs in a fresh process, one
after another, under its device's lock; on Slurm the jobs go out as job arrays (split at MaxArraySize, claims
withdrawn when sbatch refuses) and the launch returns, or with `wait` follows them to their end. Then each job
comes back as a `JobReturn`: a done job's stored value, a failed job's exception. What is Hydra's (naming a job,
composing it, its `JobReturn`) is in jobs.py and returns.py; the job's process runs task/hydra_app.py.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, setup_globals
from omegaconf import OmegaConf

from molgen_grid.errors import InputError, Interrupted, closed_pipe, fail, interrupt_on_stop_signals, interrupted
from molgen_grid.grid.app.actions import SHOWN
from molgen_grid.grid.app.jobs import AppJob, cell_of, check_directories, compose_job, config_part, job_dir, \
    numbered
from molgen_grid.grid.app.returns import changes_dir, job_return
from molgen_grid.grid.cells import ValueSpelling, name_matches
from molgen_grid.grid.claim import Claimer
from molgen_grid.grid.executors.base import executors as load_executors
from molgen_grid.grid.fingerprint import Current
from molgen_grid.grid.follow import follow
from molgen_grid.grid.gitinfo import provenance as code_provenance
from molgen_grid.grid.plan import Entry, make_plan
from molgen_grid.grid.poll import Replan
from molgen_grid.grid.run import ConsoleEvents, Runner
from molgen_grid.grid.settings import GridSettings
from molgen_grid.grid.store import CellStore
from molgen_grid.grid.task.hydra_app import SWEEP_PARTS, AppFunctionWork, AppSweepPart, Shipped, \
    app_code
from molgen_grid.grid.top_up import TopUp
from molgen_grid.grid.worker import CellJob
from molgen_grid.words import plural


class AppSweep:
    """One multirun batch of an app, for the launcher that Hydra built (its action, force, wait, resources)."""

    def __init__(self, launcher: Any, task_function: Callable) -> None:
        self.launcher = launcher
        self.task_function = task_function
        self.config = launcher.config
        self.hydra_context = launcher.hydra_context
        self.option_sets = launcher.option_sets
        self.console = launcher.console
        self.sweep_dir = Path(os.path.abspath(str(self.config.hydra.sweep.dir)))
        self.current = Current(lambda: app_code(task_function, Path(os.getcwd())))
        settings = OmegaConf.structured(GridSettings)
        settings.resources = launcher.resources
        settings.slurm.array_parallelism = launcher.array_parallelism
        self.executors = load_executors(settings, self.sweep_dir)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        try:
            jobs = self.jobs(job_overrides, initial_job_idx)
            entries, views = self.plan(jobs, self.named(jobs, self.launcher.force))
            if self.launcher.action in SHOWN:
                SHOWN[self.launcher.action](self, jobs, entries)
                return []
            if self.launcher.action != "run":
                raise InputError(f"hydra.launcher.action={self.launcher.action}: an app's sweep has run, "
                                 f"{', '.join(SHOWN)}")
            return self.run(jobs, entries, views)
        except InputError as exc:
            fail(str(exc))
        except BrokenPipeError:  # a reader that closed the pipe (`| head`), with any sweeper
            closed_pipe()

    def jobs(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[AppJob]:
        """Every job's cell and directory (composed only where the user's own subdir names it), checked once per
        distinct option set and override (option_sets.py)."""
        loader = self.hydra_context.config_loader
        sets = self.option_sets
        spelling = ValueSpelling(sets)
        jobs = []
        own_subdir = not numbered(self.config)
        for i, overrides in enumerate(job_overrides):
            sets.check(overrides)
            cell = cell_of(overrides, sets, spelling)
            compose = functools.partial(compose_job, loader, self.config, list(overrides), initial_job_idx + i, cell)
            cfg = compose() if own_subdir else None
            where = job_dir(self.sweep_dir, cfg, cell)
            jobs.append(AppJob(initial_job_idx + i, list(overrides), cell, CellStore(where.parent, where.name),
                               compose, cfg))
        check_directories(jobs, self.sweep_dir)
        return jobs

    @staticmethod
    def named(jobs: list[AppJob], names: Sequence[str]) -> set[str]:
        """The jobs these names select (`hydra.launcher.force`, `hydra.launcher.accept`): `*`, a directory's or a
        cell's name, or some of a cell's `key=value` parts (`x=1`: every job with x=1)."""
        def selects(name: str, job: AppJob) -> bool:
            own = dict(job.cell.extra)
            return name in ("*", job.store.name, job.cell.name) or \
                name_matches(name, lambda wanted: {k: own.get(k) for k in wanted})

        return {j.cell.name for j in jobs if any(selects(name, j) for name in names)}

    def plan(self, jobs: list[AppJob], forced: set[str], views: Any = None) -> tuple[list[Entry], dict]:
        resources = self.launcher.resources

        def config_of(job: AppJob) -> dict[str, str]:
            keys = self.option_sets.config_part(job.overrides)
            return config_part(job.cfg, resources) if keys is None else keys

        entries = [Entry(j.cell, j.store, lambda cell, j=j: config_of(j)) for j in jobs]
        return make_plan(entries, forced, self.executors, self.current, views=views)

    def replan(self, jobs: list[AppJob]) -> Replan:
        """Some of these jobs planned again, for following them (poll.py)."""
        by_name = {j.cell.name: j for j in jobs}
        return lambda again, views: self.plan([by_name[e.cell.name] for e in again], set(), views)

    def resources_of(self, job: AppJob) -> dict[str, Any]:
        """Where the job runs and what it asks for: the launcher's keys, overridden by the job's option of the
        app's resource group (`hydra.launcher.resources`) where it has one."""
        keys = {k: v for k, v in self.launcher.job_resources.items() if v is not None}
        group = self.launcher.resources
        option = self.option_sets.option(job.overrides, group) if group else {}
        if option is None:
            chosen = OmegaConf.select(job.cfg, group)
            option = OmegaConf.to_container(chosen, resolve=True) if OmegaConf.is_dict(chosen) else {}
        return {**keys, **option}

    def run(self, jobs: list[AppJob], entries: list[Entry], views: dict) -> Sequence[JobReturn]:
        by_dir = {j.store.dir: j for j in jobs}
        part = AppSweepPart(self.hydra_context, self.config, self.task_function, Singleton.get_state(),
                            list(sys.path), self.current.code, self.launcher.resources)
        shipped = Shipped(part, self.sweep_dir / SWEEP_PARTS)

        provenance = code_provenance(Path.cwd())

        def make_job(executor: str) -> Callable[[Entry, str], CellJob]:
            def job(entry: Entry, attempt: str) -> CellJob:
                app_job = by_dir[entry.store.dir]
                return CellJob(cell_dir=str(entry.store.dir), experiment=str(self.config.hydra.job.name),
                               cell=entry.cell.name, attempt=attempt, axes={}, overrides=app_job.overrides,
                               work=AppFunctionWork(shipped, app_job.overrides, app_job.idx, app_job.cell),
                               project_dir=os.getcwd(),
                               executor=executor, provenance=provenance)
            return job

        def claimer(name: str) -> Claimer:
            return Claimer(name, views, lambda e, summary: self.current.stale(summary.get("fingerprint"),
                                                                              e.config_part),
                           make_job(name), {e.cell.name for e in entries if e.why == "forced"})

        group = self.launcher.resources

        def runner_of(now: list[Entry]) -> Runner:
            return Runner(f"sweep {self.sweep_dir}", "job", now, self.executors, claimer, self.console,
                          resources_of=lambda e: self.resources_of(by_dir[e.store.dir]),
                          label_of=lambda e: f"job {e.cell.name}", where=group or "hydra.launcher",
                          executors_from="the engine's executors",
                          events=ConsoleEvents(self.console, None, noun="job"), fail_fast=self.launcher.fail_fast)

        runner = runner_of(entries)
        self.launcher.outcome = runner.outcome
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        interrupt_on_stop_signals()
        try:
            outcome = runner()
        except (KeyboardInterrupt, Interrupted) as exc:
            running = next((j for j in jobs if j.cell.name == runner.outcome.running), None)
            stopped = f"job #{running.idx} {running.store.name} stopped and is recorded as interrupted; " \
                if running is not None else ""
            interrupted(getattr(exc, "signum", signal.SIGINT),
                        f"{stopped}the same multirun again runs it and the jobs not run yet")
        elsewhere = outcome.submitted + outcome.in_flight + outcome.busy
        if elsewhere and not self.launcher.wait:
            self.console.print(f"{plural(elsewhere, 'job')} submitted or running elsewhere, not "
                               f"waited for: hydra.launcher.action=status follows them, hydra.launcher.wait=true "
                               f"returns every value")
            return []

        if elsewhere:  # jobs left waiting for room under the user's submission limit go out as others end
            follow(self.console, entries, self.replan(jobs), self.executors,
                   top_up=TopUp(lambda now: runner_of(now).submit_more(), outcome.waiting))
        final = self.plan(jobs, set())[0]
        sets = self.option_sets
        return [job_return(j, e.state, changes_dir(sets.base(sets.split(j.overrides)[0]))) for j, e in zip(jobs, final)]

