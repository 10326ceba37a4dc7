"""What an app's multirun does besides running its jobs, by `hydra.launcher.action`: each action shows or changes
the jobs as planned (app/sweep.py plans them once for all of them), one small function each.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Callable

from molgen_grid.grid.accept import accept
from molgen_grid.grid.app.jobs import AppJob
from molgen_grid.grid.app.returns import status_value, value_text
from molgen_grid.grid.cancel import cancel
from molgen_grid.grid.cell_logs import only_one, show_logs
from molgen_grid.grid.plan import Entry
from molgen_grid.grid.state import DONE
from molgen_grid.grid.status_view import runs_on, show_status
from molgen_grid.grid.top_up import waiting_lines
from molgen_grid.grid.watch import watch
from molgen_grid.words import plural

if TYPE_CHECKING:
    from molgen_grid.grid.app.sweep import AppSweep


def show(sweep: AppSweep, jobs: list[AppJob], entries: list[Entry]) -> None:
    """status: the jobs' states as a study's status shows its cells (status_view.py), with a done job's stored
    value; dry_run: what a run would do with each job; both then say how many jobs a run would leave waiting
    for room under the user's submission limit."""
    launcher = sweep.launcher
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.state.state] = counts.get(e.state.state, 0) + 1
    if launcher.json:
        values = {j.idx: status_value(j) for j, e in zip(jobs, entries) if e.state.state == DONE}
        print(json.dumps({"sweep_dir": str(sweep.sweep_dir), "counts": counts, "jobs": [
            {"num": j.idx, "cell": j.cell.name, "dir": str(j.store.dir), "state": e.state.state,
             "reason": e.state.reason, "job_id": e.state.job_id, "runs": e.why, "overrides": j.overrides,
             "value": values.get(j.idx, (None, None))[0], "value_file": values.get(j.idx, (None, None))[1]}
            for j, e in zip(jobs, entries)]}, default=str))
        return
    job_of = {id(e): j for j, e in zip(jobs, entries)}
    if launcher.action == "status":
        def value(e: Entry) -> str:
            return value_text(*status_value(job_of[id(e)])) if e.state.state == DONE else ""

        show_status(sweep.console, f"sweep {sweep.sweep_dir}", entries, [f"#{j.idx} {j.store.name}" for j in jobs],
                    lambda e: place(sweep, e), launcher.all, "job", ("value", value), "hydra.launcher.all=true")
    else:
        lines = []
        for j, e in zip(jobs, entries):
            what = f"runs ({e.why})" if e.why else "kept"
            reason = f": {e.state.reason}" if e.state.reason else ""
            lines.append(f"#{j.idx} {j.store.name}: {what}{reason}")
        lines.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs")
        sweep.console.out("\n".join(lines), highlight=False)
    for line in waiting_lines(entries, sweep.executors, lambda e: sweep.resources_of(job_of[id(e)]), "job"):
        sweep.console.print(line, markup=False, highlight=False)


def place(sweep: AppSweep, entry: Entry) -> str:
    """Where a job runs, as the status counts name it: its option of the app's resource group when the sweep
    chooses one, else the launcher's executor and partition (no job's config is composed for this)."""
    group, keys = sweep.launcher.resources, sweep.launcher.job_resources
    option = dict(entry.cell.extra).get(group) if group else None
    if option is not None:
        return f"{group}={option}"
    return runs_on(keys) + (f" ({group} as the app sets it)" if group else "")


def chosen(sweep: AppSweep, jobs: list[AppJob], entries: list[Entry], names: list[str]) -> list[Entry]:
    """The entries of the jobs these names select (every job when none is named)."""
    selected = sweep.named(jobs, names or ["*"])
    return [e for e in entries if e.cell.name in selected]


def accept_stale(sweep: AppSweep, jobs: list[AppJob], entries: list[Entry]) -> None:
    names = sweep.launcher.accept
    count = accept(chosen(sweep, jobs, entries, names), sweep.current, bool(names), print)
    print(f"{plural(count, 'stale job')} accepted")


def cancel_jobs(sweep: AppSweep, jobs: list[AppJob], entries: list[Entry]) -> None:
    names = sweep.launcher.cancel
    count = cancel(chosen(sweep, jobs, entries, names), sweep.executors, bool(names), print)
    print(f"{plural(count, 'job')} cancelled")


def watch_jobs(sweep: AppSweep, jobs: list[AppJob], entries: list[Entry]) -> None:
    watch(sweep.console, f"sweep {sweep.sweep_dir}", entries, sweep.replan(jobs), sweep.executors, noun="job")


def logs(sweep: AppSweep, jobs: list[AppJob], entries: list[Entry]) -> None:
    """hydra.launcher.logs=NAME: one job's output (cell_logs.py), the job named as force names them."""
    launcher = sweep.launcher
    name = launcher.logs
    picked = only_one(name, sorted(sweep.named(jobs, [name])) if name else [])
    (job, entry), = [(j, e) for j, e in zip(jobs, entries) if j.cell.name == picked]
    show_logs(entry, name, launcher.attempt, launcher.follow, lambda: sweep.plan([job], set())[0], sweep.executors)


#: The actions that show or change the planned jobs without running them, by `hydra.launcher.action`.
SHOWN: dict[str, Callable[[AppSweep, list[AppJob], list[Entry]], None]] = {
    "status": show, "dry_run": show, "accept": accept_stale, "cancel": cancel_jobs, "watch": watch_jobs, "logs": logs,
}
