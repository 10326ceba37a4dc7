"""The launcher's app mode: plan an app's jobs as cells, show them or run what needs running, return every job.

Each job's state is read from its directory (summary, error record, attempts, lock) and its executor's view of
its last attempt, as the engine reads its cells' (state.py); a job runs when it is missing, failed, interrupted,
stale or forced. Locally each runs in a fresh process (submitit's LocalExecutor, one after another), so a crash
ends the job, never the sweep; on Slurm the jobs go out as one job array and the launch returns (or, with
`wait`, blocks for their values). A done job is not run again: it comes back as a COMPLETED `JobReturn`
carrying its stored value.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import uuid
from dataclasses import fields, replace
from pathlib import Path
from typing import Callable, Sequence

import submitit
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.errors import HydraException
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from molgen_grid.errors import Interrupted, interrupted
from molgen_grid.grid.app.cell_process import AppCellJob, run_app_cell
from molgen_grid.grid.app.jobs import AppJob, job_state, prepare_job, summary_value
from molgen_grid.grid.app.returns import stored_return
from molgen_grid.grid.app.slurm import NAME as SLURM, SlurmKeys, slurm_view, submit
from molgen_grid.grid.executors.local import LocalView, outcome, record_interruption, stop, wait
from molgen_grid.grid.plan import jobs_to_ask, why_run
from molgen_grid.grid.state import IN_FLIGHT, JobView, process_identity
from molgen_grid.grid.store import OVERRIDES, atomic_write_json
from molgen_grid.words import plural

LOCAL = "local"
EXECUTORS = (LOCAL, SLURM)
SLURM_KEYS = {f.name for f in fields(SlurmKeys)}
#: How often a sweep that waits looks at jobs another sweep or submission runs.
WAIT_POLL_S = 2.0


def forces(name: str, job: AppJob) -> bool:
    """Whether a `force` entry names this job: `*`, its directory's name, or some of its cell's `key=value`
    parts (`x=1` forces every job with x=1, as the engine's partial cell names do)."""
    if name in ("*", job.out_dir.name, job.cell.name):
        return True
    parts = set(job.cell.name.split(","))
    return all(part in parts for part in name.split(","))


class AppLauncher:
    """One multirun batch of an app: its jobs planned, shown or run."""

    def __init__(self, hydra_context: HydraContext, task_function: Callable, config: DictConfig, action: str,
                 force: Sequence[str], as_json: bool, console: Console, executor: str = LOCAL,
                 slurm: SlurmKeys = SlurmKeys(), wait: bool = False, resources: str | None = None) -> None:
        if executor not in EXECUTORS:
            raise HydraException(f"hydra.launcher.executor={executor!r}: choose one of {', '.join(EXECUTORS)}")
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config
        self.action = action
        self.force = list(force)
        self.json = as_json
        self.console = console
        self.executor = executor
        self.slurm = slurm
        self.wait = wait
        self.resources = resources
        self.views: dict[str, JobView] = {LOCAL: LocalView()}

    @property
    def sweep_dir(self) -> Path:
        return Path(os.path.abspath(str(self.config.hydra.sweep.dir)))

    def plan(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[AppJob]:
        """Every job's cell, directory and state (the cluster asked once, only about jobs it may hold)."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        loader = self.hydra_context.config_loader
        jobs = [prepare_job(initial_job_idx + i, overrides, loader.load_sweep_config(self.config, list(overrides)),
                            parser, self.task_function, self.resources) for i, overrides in enumerate(job_overrides)]
        found = [j for j in jobs if j.store.dir.is_dir()]
        wanted = jobs_to_ask([j.store for j in found], [j.store.attempts() for j in found])
        if wanted.get(SLURM):
            self.views[SLURM] = slurm_view(wanted[SLURM])
        for job in jobs:
            job.state = job_state(job, self.views)
            job.why = why_run(job.state, any(forces(name, job) for name in self.force))
        return jobs

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        jobs = self.plan(job_overrides, initial_job_idx)
        if self.action in ("status", "dry_run"):
            self.show(jobs)
            return []
        busy = [j for j in jobs if j.why is None and j.state.state in IN_FLIGHT]
        todo = [j for j in jobs if j.why is not None]
        self.console.print(f"sweep {self.sweep_dir}: {plural(len(jobs), 'job')}, {len(todo)} to run, "
                           f"{len(jobs) - len(todo) - len(busy)} done, {len(busy)} queued or running")
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        routes = {j.idx: self.route(j) for j in todo}
        handles = self.submit_slurm([j for j in todo if routes[j.idx][0] == SLURM], routes)
        local = [j for j in todo if routes[j.idx][0] == LOCAL]
        ran: dict[int, JobReturn] = {}
        for place, job in enumerate(local, 1):
            ret = self.run_local(job, place, len(local))
            if ret is None:  # another sweep took the job meanwhile: as if it had been busy from the start
                job.state = job_state(job, self.views)
                busy += [job] if job.state.state in IN_FLIGHT else []
            else:
                ran[job.idx] = ret
        if (handles or busy) and not self.wait:
            self.console.print(f"{plural(len(handles) + len(busy), 'job')} submitted or running elsewhere, not "
                               f"waited for: hydra.launcher.action=status follows them, hydra.launcher.wait=true "
                               f"returns every value")
            return []
        returns = []
        for job in jobs:
            if job.idx in ran:
                returns.append(ran[job.idx])
            elif job.idx in handles:
                returns.append(handles[job.idx].results()[0])
            else:  # done, or in flight elsewhere: its stored value once it ended
                returns.append(self.await_stored(job))
        return returns

    def route(self, job: AppJob) -> tuple[str, SlurmKeys]:
        """Where the job runs and what Slurm is asked for: the launcher's keys, overridden by the job's option of
        the app's resource group (`hydra.launcher.resources`) where it has one."""
        option = OmegaConf.select(job.cfg, self.resources) if self.resources else None
        values = OmegaConf.to_container(option, resolve=True) if OmegaConf.is_dict(option) else {}
        executor = str(values.get("executor", self.executor))
        if executor not in EXECUTORS:
            raise HydraException(f"{self.resources}.executor={executor!r} (job {job.out_dir.name}): choose one of "
                                 f"{', '.join(EXECUTORS)}")
        return executor, replace(self.slurm, **{k: v for k, v in values.items() if k in SLURM_KEYS})

    def show(self, jobs: list[AppJob]) -> None:
        """status: every job's state; dry_run: what a run would do with each."""
        counts: dict[str, int] = {}
        for j in jobs:
            counts[j.state.state] = counts.get(j.state.state, 0) + 1
        if self.json:
            print(json.dumps({"sweep_dir": str(self.sweep_dir), "counts": counts, "jobs": [
                {"num": j.idx, "cell": j.cell.name, "dir": str(j.out_dir), "state": j.state.state,
                 "reason": j.state.reason, "job_id": j.state.job_id, "runs": j.why, "overrides": j.overrides}
                for j in jobs]}))
            return
        for j in jobs:
            what = (f"runs ({j.why})" if j.why else "kept") if self.action == "dry_run" else j.state.state
            reason = f": {j.state.reason}" if j.state.reason else ""
            self.console.print(f"#{j.idx} {j.out_dir.name}: {what}{reason}", highlight=False)
        self.console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs")

    def claim(self, job: AppJob, executor: str) -> str | None:
        """The cell's lock taken for an instant, its state read again under it, the attempt recorded: the
        attempt's id, or None when another sweep took or finished the cell meanwhile."""
        store = job.store
        with store.locked() as got:
            if not got or why_run(job_state(job, self.views, lock_held=True), job.why == "forced") is None:
                return None
            atomic_write_json(store.path(OVERRIDES), job.overrides)
            attempt = uuid.uuid4().hex[:12]
            store.append_attempt({"attempt": attempt, "executor": executor, "host": socket.gethostname(),
                                  "claimed_by": os.getpid(), **process_identity(os.getpid()), "why": job.why})
            return attempt

    def cell_job(self, job: AppJob, attempt: str, owner_pid: int | None) -> AppCellJob:
        return AppCellJob(out_dir=str(job.out_dir), cell=job.cell.name, attempt=attempt, idx=job.idx,
                          overrides=job.overrides, cfg=job.cfg, task_function=self.task_function,
                          hydra_context=self.hydra_context, singleton_state=Singleton.get_state(),
                          fingerprint=job.fingerprint, cwd=os.getcwd(), sys_path=list(sys.path),
                          owner_pid=owner_pid)

    def run_local(self, job: AppJob, place: int, total: int) -> JobReturn | None:
        """Run one job in its own process and wait for it (None: another sweep took or finished it meanwhile);
        Ctrl-C stops it, recorded as interrupted."""
        attempt = self.claim(job, LOCAL)
        if attempt is None:
            self.console.print(f"[{place}/{total}] #{job.idx} {job.out_dir.name}: taken by another sweep "
                               f"meanwhile", highlight=False)
            return None
        executor = submitit.LocalExecutor(folder=job.out_dir / "logs")
        executor.update_parameters(timeout_min=self.slurm.timeout_min)
        self.console.print(f"[{place}/{total}] #{job.idx} {job.out_dir.name}: running ({job.why})", highlight=False)
        started = time.time()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # submitit's controller would print a traceback:
        try:  # the job's own process takes Ctrl-C (cell_process.py), the sweep stops the controller itself
            handle = executor.submit(run_app_cell, self.cell_job(job, attempt, os.getpid()))
        finally:
            signal.signal(signal.SIGINT, previous)
        job.store.append_attempt({"update": True, "attempt": attempt, "job_id": str(handle.job_id),
                                  "job_identity": process_identity(int(handle.job_id)),
                                  "log": str(handle.paths.stdout)})
        try:
            wait(handle)
        except BaseException as exc:
            stop(handle)
            record_interruption(job.store, exc, attempt)
            if isinstance(exc, (KeyboardInterrupt, Interrupted)):  # one line and 128 + the signal, no traceback
                interrupted(getattr(exc, "signum", signal.SIGINT),
                            f"job #{job.idx} {job.out_dir.name} stopped and is recorded as interrupted; the same "
                            f"multirun again runs it and the jobs not run yet")
            raise
        try:
            ret = handle.result()
        except submitit.core.utils.UncompletedJobError:  # killed, or stopped by a signal the sweep did not get
            raise HydraException(f"job {job.idx} ({job.out_dir}) ended without a result: "
                                 f"{outcome(job.store, attempt)}") from None
        if ret is None:
            return None
        ok = (job.store.summary() or {}).get("attempt") == attempt
        self.console.print(f"[{place}/{total}] #{job.idx} {job.out_dir.name}: "
                           f"{'[green]done[/]' if ok else '[red]failed[/]'} in {time.time() - started:.1f}s",
                           highlight=False)
        return ret

    def submit_slurm(self, todo: list[AppJob], routes: dict[int, tuple[str, SlurmKeys]]) -> dict[int, submitit.Job]:
        """Claim and submit these jobs: one job array per distinct set of Slurm keys; their handles by number."""
        groups: dict[SlurmKeys, list[tuple[AppJob, str]]] = {}
        for job in todo:
            attempt = self.claim(job, SLURM)
            if attempt is not None:
                groups.setdefault(routes[job.idx][1], []).append((job, attempt))
        handles: dict[int, submitit.Job] = {}
        for keys, claimed in groups.items():
            submitted = submit([self.cell_job(j, a, None) for j, a in claimed], [j.store for j, _ in claimed], keys,
                               self.sweep_dir / ".submitit")
            handles.update({j.idx: h for (j, _), h in zip(claimed, submitted)})
            self.console.print(f"submitted array {str(submitted[0].job_id).split('_')[0]} to "
                               f"{keys.partition or 'the default partition'}: {plural(len(claimed), 'job')}")
        return handles

    def await_stored(self, job: AppJob) -> JobReturn:
        """The stored value of a done job, or of one another sweep or submission runs, once it ended."""
        while job.state.state in IN_FLIGHT:
            time.sleep(WAIT_POLL_S)
            last = job.store.attempts()[-1:]
            if last and last[0].get("executor") == SLURM:
                self.views[SLURM] = slurm_view(last)
            job.state = job_state(job, self.views)
        if job.state.state != "done":
            raise HydraException(f"{job.out_dir} ended {job.state.state}: {job.state.reason}")
        return stored_return(job, summary_value(job.store))
