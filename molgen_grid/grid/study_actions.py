"""What a study's sweep does besides running its cells: each action shows or changes the planned grid
(study_sweep.py plans it once for all of them), one small function each, chosen by `hydra.launcher.action`.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from molgen_grid.grid.accept import accept
from molgen_grid.grid.cancel import cancel
from molgen_grid.grid.cell_logs import show_logs
from molgen_grid.grid.collector import paused
from molgen_grid.grid.estimate import of_study
from molgen_grid.grid.follow import follow
from molgen_grid.grid.plan import Entry
from molgen_grid.grid.retry import requests
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.status import print_plan, print_status, status_json, test_mode_hint
from molgen_grid.grid.top_up import waiting_lines
from molgen_grid.grid.watch import watch
from molgen_grid.words import plural

if TYPE_CHECKING:
    from molgen_grid.grid.study_sweep import StudyPlan, StudySweep


def say(console: Any, lines: list[str]) -> None:
    """Lines of plain text (names and values hold brackets that rich would read as markup)."""
    for line in lines:
        console.print(line, markup=False, highlight=False)


def time_left(spec: GridSpec, root: Path, executors: dict, entries: list[Entry], accuracy: bool = False) -> list[str]:
    """The lines of time left of the grid's cells to run or in flight, and how far off earlier estimates were."""
    estimator = of_study(spec, root, executors).read(entries)
    off = estimator.accuracy() if accuracy else None
    return estimator.lines() + ([off] if off else [])


def status(sweep: StudySweep, plan: StudyPlan, partial: str | None) -> None:
    launcher, spec = sweep.launcher, plan.spec
    if launcher.json:
        with paused():
            print(status_json(spec.experiment, plan.entries, partial))
        return
    hint = None if launcher.limit else test_mode_hint(spec, plan.entries, plan.root)
    print_status(sweep.console, spec, plan.entries, hint, launcher.all)
    say(sweep.console, waiting_lines(plan.entries, plan.executors, lambda e: spec.resources(e.cell)))
    say(sweep.console, time_left(spec, plan.root, plan.executors, plan.entries, accuracy=True))
    if launcher.wait:
        ended = follow(sweep.console, plan.entries, plan.replan, plan.executors, plan.views)
        sweep.console.print(f"sweep {spec.experiment}: {ended}")


def dry_run(sweep: StudySweep, plan: StudyPlan, partial: str | None) -> None:
    with paused():
        print_plan(sweep.console, plan.spec.experiment, plan.entries,
                   requests(plan.entries, plan.executors, plan.spec.resources))
        say(sweep.console, waiting_lines(plan.entries, plan.executors, lambda e: plan.spec.resources(e.cell)))
        say(sweep.console, time_left(plan.spec, plan.root, plan.executors, plan.entries))


def logs(sweep: StudySweep, plan: StudyPlan, partial: str | None) -> None:
    launcher = sweep.launcher
    show_logs(plan.entries[0], launcher.logs, launcher.attempt, launcher.follow,
              lambda: plan.replan(plan.entries, None)[0], plan.executors)


def accept_stale(sweep: StudySweep, plan: StudyPlan, partial: str | None) -> None:
    count = accept(plan.entries, plan.current, bool(sweep.launcher.accept), lambda line: say(sweep.console, [line]))
    sweep.console.print(f"experiment {plan.spec.experiment}: {plural(count, 'stale cell')} accepted")


def cancel_jobs(sweep: StudySweep, plan: StudyPlan, partial: str | None) -> None:
    count = cancel(plan.entries, plan.executors, bool(sweep.launcher.cancel), lambda line: say(sweep.console, [line]))
    sweep.console.print(f"experiment {plan.spec.experiment}: {plural(count, 'cell')} cancelled")


def watch_grid(sweep: StudySweep, plan: StudyPlan, partial: str | None) -> None:
    watch(sweep.console, f"experiment {plan.spec.experiment}", plan.entries, plan.replan, plan.executors, plan.views)


def report(sweep: StudySweep, plan: StudyPlan, partial: str | None) -> None:
    sweep.report(plan.spec, plan.entries)
    hint = None if sweep.launcher.limit else test_mode_hint(plan.spec, plan.entries, plan.root)
    if hint:
        sweep.console.print(f"{hint}; their report: --report --limit N")


#: The actions that show or change the planned grid without running it, by `hydra.launcher.action`.
SHOWN: dict[str, Callable[[StudySweep, StudyPlan, str | None], None]] = {
    "status": status, "dry_run": dry_run, "logs": logs, "accept": accept_stale, "cancel": cancel_jobs,
    "watch": watch_grid, "report": report,
}
