"""The project's Hydra launcher: plan the sweep, then show it, or run locally and submit to Slurm what is not done.

Hydra's sweeper expands the overrides into cells; this launcher drops the cells that are done (or queued or
running somewhere) before anything is launched. Cells of `gpu=local` run here, one after another, each in a
fresh process; the others go to Slurm as job arrays and the launcher returns at once (or follows them with
`wait`). `action` turns the same sweep into a status table or a dry-run plan, so every front door shares one
expansion of the grid.
"""
from __future__ import annotations

import contextlib
from collections import Counter
import hashlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, List, Sequence

from hydra.errors import ConfigCompositionException
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from molgen_grid.errors import InputError
from molgen_grid.grid import slurm
from molgen_grid.grid.cluster import ClusterView, cluster_view, slurm_answers
from molgen_grid.grid.devices import device_lock, local_device
from molgen_grid.grid.gitinfo import git_provenance
from molgen_grid.grid.local import start_local, wait_local
from molgen_grid.grid.plan import Entry, make_plan, slurm_jobs, why_run
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.state import COMPLETE, IN_FLIGHT, read_state
from molgen_grid.grid.status import print_plan, print_status, status_json
from molgen_grid.grid.store import CONFIG, ERROR, OVERRIDES, CellStore, atomic_write_json, atomic_write_text, \
    safe_component
from molgen_grid.grid.worker import CellJob, error_record, load_task

ACTIONS = ("run", "status", "dry_run", "report")
ALL_CELLS = "*"
LOCAL = "local"
POLL_S = 2.0


def runs_here(resolved: dict[str, Any]) -> bool:
    """Whether a cell's `gpu` option runs it on this machine (else it goes to Slurm)."""
    return resolved["gpu"].get("executor", LOCAL) == LOCAL


@dataclass
class GridLauncherConf:
    _target_: str = "hydra_plugins.molgen_grid_plugins.GridLauncher"
    #: run (the default), status, dry_run or report.
    action: str = "run"
    #: Cell names to rerun even if done; ["*"] reruns every cell of the grid.
    force: List[str] = field(default_factory=list)
    #: With action=status: print JSON instead of a table.
    json: bool = False
    #: After submitting to Slurm, follow the cells to the end.
    wait: bool = False
    #: With action=report: comparisons along one axis, `AXIS=A:B` each.
    compare: List[str] = field(default_factory=list)
    #: With action=report: the two settings of the heatmap (default: the two that vary most).
    heatmap: List[str] = field(default_factory=list)


@dataclass
class SweepOutcome:
    """What a sweep did, for its closing line and its exit code."""

    done: int = 0
    in_flight: int = 0
    ran: int = 0
    submitted: int = 0
    failed: int = 0
    busy: int = 0

    def line(self) -> str:
        return (f"{self.done} done, {self.ran} run, {self.failed} failed"
                + (f", {self.in_flight} queued or running" if self.in_flight else "")
                + (f", {self.submitted} submitted" if self.submitted else "")
                + (f", {self.busy} left to another sweep" if self.busy else ""))


class GridLauncher(Launcher):
    def __init__(self, action: str = "run", force: Sequence[str] = (), json: bool = False, wait: bool = False,
                 compare: Sequence[str] = (), heatmap: Sequence[str] = ()) -> None:
        if action not in ACTIONS:
            raise InputError(f"unknown launcher action {action!r}: choose one of {', '.join(ACTIONS)}")
        self.action = action
        self.force = list(force)
        self.json = json
        self.wait = wait
        self.compare = list(compare)
        self.heatmap = list(heatmap)
        self.console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 400)
        self.outcome = SweepOutcome()

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        spec = GridSpec.of_sweep(self.hydra_context.config_loader, self.config)
        cells = spec.cells(job_overrides)
        root = self.results_root(spec)
        if self.force and self.force != [ALL_CELLS]:
            cells = spec.resolve_names(self.force, cells, root)
        forced = {c.name for c in cells} if self.force else set()
        entries, view = make_plan(spec, cells, root, forced)
        if view.partial and not self.json:
            self.console.print(f"[yellow]partial view: {view.partial}[/]")
        if self.action == "status":
            if self.json:
                print(status_json(spec.experiment, entries, view.partial))
            else:
                print_status(self.console, spec, entries)
        elif self.action == "dry_run":
            print_plan(self.console, spec.experiment, entries)
        elif self.action == "report":
            self.report(spec, entries)
        else:
            self.run(spec, root, entries, forced, view)
        return []

    def report(self, spec: GridSpec, entries: list[Entry]) -> None:
        """Tables, comparisons and plots of the experiment under artifacts/, and the map of all experiments."""
        from molgen_grid.grid import report  # pandas and matplotlib: only for reports, never for status

        cwd = Path(self.config.hydra.runtime.cwd)
        artifacts = cwd / spec.settings.artifacts_dir
        built = report.build(spec, entries, self.compare)
        files = report.write(spec, entries, built, artifacts / safe_component(spec.experiment, "experiment name"),
                             self.heatmap)
        atomic_write_text(artifacts / "README.md", report.experiment_map(
            self.hydra_context.config_loader, spec.config_name, artifacts, cwd / spec.settings.results_dir))
        self.console.print(f"experiment {spec.experiment}: {len(built.frame)} cells reported"
                           + (f" ({', '.join(f'{n} {s}' for s, n in built.pending.items())} not yet)"
                              if built.pending else ""))
        if built.best is not None:
            self.console.print(f"best cell: {built.labels[built.best.name]}")
        for text, pairs in built.comparisons.items():
            self.console.print(f"\n{text}: {len(pairs)} matched pairs")
            if len(pairs):
                self.console.print(pairs.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
                self.console.print(f"median change: {report.median_changes(pairs)}")
        for path in files:
            self.console.print(f"wrote {path}")
        self.console.print(f"wrote {artifacts / 'README.md'}")

    def results_root(self, spec: GridSpec) -> Path:
        base = Path(self.config.hydra.runtime.cwd) / spec.settings.results_dir
        return base / safe_component(spec.experiment, "experiment name")

    def run(self, spec: GridSpec, root: Path, entries: list[Entry], forced: set[str], view: ClusterView) -> None:
        self.outcome.done = sum(1 for e in entries if not e.runs and e.state.state in COMPLETE)
        self.outcome.in_flight = sum(1 for e in entries if not e.runs and e.state.state in IN_FLIGHT)
        todo = [(e, self.compose(spec, e)) for e in entries if e.runs]
        self.preflight(spec, todo)
        self.console.print(f"experiment {spec.experiment}: {len(entries)} cells, {len(todo)} to run, "
                           f"{self.outcome.done} done, {self.outcome.in_flight} queued or running")
        provenance = git_provenance(Path(__file__).resolve().parents[2])
        remote = [(e, r) for e, r in todo if not runs_here(r)]
        local = [(e, r) for e, r in todo if runs_here(r)]
        submitted = self.submit(spec, root, remote, provenance, forced, view) if remote else []
        for index, (entry, resolved) in enumerate(local, 1):
            self.run_local(spec, entry, resolved, provenance, entry.cell.name in forced, f"[{index}/{len(local)}]")
        if submitted and self.wait:
            self.follow(spec, submitted)
        self.console.print(f"sweep {spec.experiment}: {self.outcome.line()}")

    def compose(self, spec: GridSpec, entry: Entry) -> dict[str, Any]:
        """The cell's resolved config, less Hydra's and the engine's own settings (`hydra:`, `grid:`)."""
        try:
            cfg = spec.compose(entry.cell)
            cell_keys = [k for k in cfg if k not in ("hydra", "grid")]
            return OmegaConf.to_container(OmegaConf.masked_copy(cfg, cell_keys), resolve=True)
        except (ConfigCompositionException, OmegaConfBaseException) as exc:
            cause = exc.__cause__ or exc
            raise InputError(f"cell {entry.cell.name} cannot be composed: {str(cause).splitlines()[0]}") from None

    def preflight(self, spec: GridSpec, todo: list[tuple[Entry, dict[str, Any]]]) -> None:
        """Checks for every cell to run, before anything is written: a cluster where one is needed, and the
        cell code's own input checks (files, model)."""
        remote = {e.cell.axis_choices.get("gpu") for e, r in todo if not runs_here(r)}
        if remote and not slurm_answers():
            names = ", ".join(f"gpu={g}" for g in sorted(remote))
            raise InputError(f"{names} needs a Slurm cluster and no Slurm controller answers here (scontrol ping):"
                             " start one (bash sbatch/test-cluster.sh start) or use gpu=local")
        check = load_task(spec.settings.preflight)
        warnings = dict.fromkeys(w for _, resolved in todo for w in check(OmegaConf.create(resolved)) or [])
        for warning in warnings:
            self.console.print(f"[yellow]warning: {warning}[/]")

    def prepare(self, spec: GridSpec, entry: Entry, resolved: dict[str, Any], provenance: dict[str, Any]) -> CellJob:
        """Write the cell's config for a new attempt. Its previous outcome stays until the attempt starts (then
        it moves to history/), so a submission that fails loses nothing."""
        store = entry.store
        atomic_write_text(store.path(CONFIG), OmegaConf.to_yaml(resolved))
        atomic_write_json(store.path(OVERRIDES), entry.cell.overrides)
        return CellJob(
            cell_dir=str(store.dir), experiment=spec.experiment, cell=entry.cell.name,
            axes=entry.cell.axis_choices, overrides=entry.cell.overrides, config=resolved,
            config_hash=hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16],
            spec_hash=entry.spec_hash, task=spec.settings.task, provenance=provenance,
        )

    def submit(self, spec: GridSpec, root: Path, cells: list[tuple[Entry, dict[str, Any]]],
               provenance: dict[str, Any], forced: set[str], view: ClusterView) -> list[Entry]:
        """Every Slurm cell out as job arrays; returns at once with the cells it submitted.

        The cells' locks are held from the recheck until each attempt is written, so that a second sweep
        started meanwhile sees the new jobs and does not submit the cells again (a job that starts meanwhile
        waits for its lock).
        """
        with contextlib.ExitStack() as held:
            ready: list[tuple[Entry, CellJob, dict[str, Any]]] = []
            for entry, resolved in cells:
                got = held.enter_context(entry.store.locked())
                state = read_state(entry.store, entry.spec_hash, view, lock_held=True) if got else None
                if state is None or why_run(state, entry.cell.name in forced) is None:
                    self.outcome.busy += 1
                    continue
                ready.append((entry, self.prepare(spec, entry, resolved, provenance), resolved["gpu"]))
            by_dir = {job.cell_dir: entry for entry, job, _ in ready}
            settings = OmegaConf.to_container(spec.settings.slurm)
            done: list[Entry] = []
            for array in slurm.submit([(job, gpu) for _, job, gpu in ready], root / ".slurm", settings):
                for s in array:
                    entry = by_dir[s.cell_job.cell_dir]
                    entry.store.append_attempt({
                        "executor": "slurm", "job_id": s.job_id, "array_index": s.array_index,
                        "partition": s.partition, "log": s.log, "host": socket.gethostname(), "why": entry.why,
                    })
                    done.append(entry)
                self.console.print(f"submitted array {array[0].job_id.split('_')[0]} to {array[0].partition}: "
                                   f"{len(array)} cells")
        self.outcome.submitted = len(done)
        return done

    def follow(self, spec: GridSpec, submitted: list[Entry]) -> None:
        """Wait for the submitted cells to end, with a progress bar; count them as run or failed."""
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
            bar = progress.add_task("cells", total=len(submitted))
            while True:
                stores = [e.store for e in submitted]
                histories = [store.attempts() for store in stores]
                view = cluster_view(slurm_jobs(stores, histories))
                states = [read_state(e.store, e.spec_hash, view, attempts=a) for e, a in zip(submitted, histories)]
                ended = [s for s in states if s.state not in IN_FLIGHT]
                tally = Counter(s.state for s in states)
                progress.update(bar, completed=len(ended),
                                description=" ".join(f"{n} {k}" for k, n in sorted(tally.items())))
                if len(ended) == len(submitted):
                    break
                time.sleep(POLL_S)
        self.outcome.ran += sum(1 for s in states if s.state in ("done", "unsupported"))
        self.outcome.failed += sum(1 for s in states if s.state == "failed")
        for entry, state in zip(submitted, states):
            if state.state == "failed":
                self.console.print(f"{entry.cell.name}: [red]failed[/]: {state.reason}")

    def run_local(self, spec: GridSpec, entry: Entry, resolved: dict[str, Any], provenance: dict[str, Any],
                  forced: bool, counter: str) -> None:
        store = entry.store
        device = local_device(str(resolved["gpu"].get("device", "auto")))
        locks = Path(spec.settings.device_locks)
        with device_lock(locks, device, lambda why: self.console.print(f"{counter} {entry.cell.name}: {why}")), \
                store.locked() as got:
            if not got:
                self.outcome.busy += 1
                self.console.print(f"{counter} {entry.cell.name}: [yellow]running elsewhere, left to it[/]")
                return
            if why_run(read_state(store, entry.spec_hash, lock_held=True), forced) is None:
                self.outcome.done += 1
                self.console.print(f"{counter} {entry.cell.name}: done by another sweep meanwhile")
                return
            job = replace(self.prepare(spec, entry, resolved, provenance), owner_pid=os.getpid())
            store.retire_outcome()
            self.console.print(f"{counter} {entry.cell.name}: running ({entry.why})")
            started = time.time()
            handle = start_local(job, float(resolved["gpu"].get("timeout_min", 120)))
            store.append_attempt({"executor": LOCAL, "job_id": str(handle.job_id), "host": socket.gethostname(),
                                  "log": str(handle.paths.stdout), "why": entry.why, "device": device})
            failure = wait_local(handle)
            self.report_local(store, counter, entry.cell.name, failure, time.time() - started)

    def report_local(self, store: CellStore, counter: str, name: str, failure: str | None, seconds: float) -> None:
        if failure is None:
            summary = store.summary() or {}
            tps = (summary.get("metrics") or {}).get("tokens_per_s") or {}
            figure = f", {tps['median']:.0f} tok/s" if isinstance(tps, dict) and tps.get("median") else ""
            self.outcome.ran += 1
            self.console.print(f"{counter} {name}: [green]{summary.get('status', 'ok')}[/] in {seconds:.1f}s{figure}")
            return
        recorded = store.error()
        if recorded is None:
            atomic_write_json(store.path(ERROR), error_record(RuntimeError(failure), failure))
        else:
            failure = recorded.get("reason") or failure
        self.outcome.failed += 1
        self.console.print(f"{counter} {name}: [red]failed[/] in {seconds:.1f}s: {failure} "
                           f"(logs in {store.dir / 'logs'})")
