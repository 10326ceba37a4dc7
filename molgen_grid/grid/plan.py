"""From cells to a plan: each cell's state, and whether it runs and why."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from molgen_grid.grid.cells import Cell
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.state import COMPLETE, FAILED, IN_FLIGHT, MISSING, STALE, CellState, read_state
from molgen_grid.grid.cluster import ClusterView, cluster_view
from molgen_grid.grid.store import SUMMARY, CellStore

FORCED = "forced"


@dataclass
class Entry:
    cell: Cell
    store: CellStore
    spec_hash: str
    state: CellState
    why: str | None

    @property
    def runs(self) -> bool:
        return self.why is not None


def why_run(state: CellState, forced: bool) -> str | None:
    """The reason a cell runs (missing, failed, stale, forced), or None when it is left alone."""
    if state.state in IN_FLIGHT:
        return None
    if forced:
        return FORCED
    if state.state in COMPLETE:
        return None
    return {MISSING: MISSING, FAILED: FAILED, STALE: STALE}[state.state]


def setting_keys(entries: list[Entry]) -> list[str]:
    """The axes and every other override that any cell sets, in name order."""
    return list(dict.fromkeys(k for e in entries for k, _ in e.cell.axes + e.cell.extra))


def slurm_jobs(stores: list[CellStore], histories: list[list[dict]]) -> list[str]:
    """The last Slurm job of each cell that has no summary yet or was submitted again since its summary (a forced
    rerun): all that the cluster must be asked about. `histories`: each store's attempts, read once by the caller."""
    jobs = []
    for store, attempts in zip(stores, histories):
        last = attempts[-1] if attempts else {}
        if last.get("executor") != "slurm" or not last.get("job_id"):
            continue
        summary = store.path(SUMMARY)
        if not summary.exists() or last.get("when", 0) > summary.stat().st_mtime:
            jobs.append(str(last["job_id"]))
    return jobs


def make_plan(spec: GridSpec, cells: list[Cell], root: Path, forced: set[str]) -> tuple[list[Entry], ClusterView]:
    """Each cell's state (the cluster asked once for all of them) and whether it runs."""
    stores = [CellStore(root, cell.name) for cell in cells]
    histories = [store.attempts() for store in stores]
    view = cluster_view(slurm_jobs(stores, histories))
    entries = []
    for cell, store, attempts in zip(cells, stores, histories):
        spec_hash = spec.spec_hash(cell)
        state = read_state(store, spec_hash, view, attempts=attempts)
        entries.append(Entry(cell, store, spec_hash, state, why_run(state, cell.name in forced)))
    return entries, view
