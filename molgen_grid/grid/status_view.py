"""The status people read, whatever the grid's size: counts first, then the cells someone must look at.

A table of every cell is what a grid of a few cells wants and what nobody reads at 10,000 (rich lays out a table
row by row, about half a millisecond each: seconds). So the counts come first, per state and per place the cells
run (a small rich table); then the cells that need attention, as plain aligned lines (one write); the cells that
are fine or simply not run yet are counted, not listed, unless the grid is small or `--all` asks for every cell.
A study's status and an app's use this same view.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Callable

from rich.cells import cell_len
from rich.console import Console
from rich.segment import Segment, Segments
from rich.style import Style
from rich.table import Table

from molgen_grid.grid.cells import Cell
from molgen_grid.grid.plan import Entry
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.state import CANCELLED, DONE, FAILED, HELD, INTERRUPTED, MISSING, QUEUED, REQUEUED, \
    RUNNING, STALE, STATES, UNSUPPORTED, counts_line
from molgen_grid.words import plural

#: The cells listed by a plain status, in this order: what failed (grouped by reason), what waits on a person
#: (held: a command releases it; interrupted and cancelled: stopped part way), what changed since it ran (stale:
#: its reason names the change), then what is in flight and may hang or was hit (requeued, running: oldest
#: first; never more at once than the executors run).
ATTENTION = (FAILED, HELD, INTERRUPTED, CANCELLED, STALE, REQUEUED, RUNNING)
#: Counted, not listed, unless every cell is asked for (then listed after the others, in this order): queued
#: cells say nothing one by one (thousands may wait), missing ones never ran, done and unsupported ones are results.
COUNTED = (QUEUED, MISSING, UNSUPPORTED, DONE)
#: A grid of at most this many cells lists every one (a small grid reads best as a whole).
LIST_EVERY_CELL_UP_TO = 50
_RANK = {state: i for i, state in enumerate(ATTENTION + COUNTED)}
_STYLE = {
    DONE: "green", UNSUPPORTED: "cyan", QUEUED: "yellow", RUNNING: "yellow", REQUEUED: "yellow", HELD: "yellow",
    INTERRUPTED: "red", CANCELLED: "red", FAILED: "red", STALE: "magenta", MISSING: "dim",
}


def age(seconds: float | None) -> str:
    """`3m`: how long ago, to the unit a person reads at a glance."""
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def counts_table(entries: list[Entry], where: Callable[[Entry], str], total: Counter) -> Table:
    """Cells per place they run (`where`) and state: a row per place, a column per state present; `total`: the
    grid's count of each state."""
    by_place: defaultdict[str, Counter] = defaultdict(Counter)
    for e in entries:
        by_place[where(e)][e.state.state] += 1
    present = [s for s in STATES if total[s]]
    table = Table("where", *present, "total")
    for column in table.columns[1:]:
        column.justify = "right"
    for place, found in by_place.items():
        table.add_row(place, *(str(found[s]) if found[s] else "" for s in present), str(sum(found.values())))
    if len(by_place) > 1:
        table.add_row("all", *(str(total[s]) for s in present), str(len(entries)), style="bold")
    return table


def listed(entries: list[Entry], every: bool) -> list[int]:
    """The indices of the cells listed, in the order read: by state (ATTENTION, then COUNTED), a failed or stale
    cell by its reason (cells that failed alike together), a running or requeued one oldest first, the rest in
    grid order."""
    def key(i: int) -> tuple[int, Any, int]:
        state = entries[i].state
        within: Any = 0
        if state.state in (FAILED, STALE):
            within = state.reason or ""
        elif state.state in (RUNNING, REQUEUED):
            within = state.since if state.since is not None else float("inf")
        return _RANK.get(state.state, len(_RANK)), within, i

    wanted = range(len(entries)) if every else (i for i, e in enumerate(entries) if e.state.state in ATTENTION)
    return sorted(wanted, key=key)


def aligned(rows: list[list[str]]) -> list[str]:
    """Rows of columns under a header row as lines, each column as wide as its widest value, the last one left
    ragged; a column with no value in any row is left out (no job id, no age: nothing ran)."""
    kept = [c for c in range(len(rows[0])) if any(row[c] for row in rows[1:])] or [0]
    rows = [[row[c] for c in kept] for row in rows]
    lengths = [[cell_len(v) for v in row[:-1]] for row in rows]
    widths = [max(row[c] for row in lengths) for c in range(len(kept) - 1)]
    return ["  " + "  ".join([v + " " * (w - n) for v, n, w in zip(row, own, widths)] + [row[-1]]).rstrip()
            for row, own in zip(rows, lengths)]


def print_cells(console: Console, entries: list[Entry], order: list[int], labels: list[str], noun: str,
                more: tuple[str, Callable[[Entry], str]] | None = None) -> None:
    """The listed cells' lines under a header, each run of lines of one state in that state's colour: one print
    of ready-made segments (rich would otherwise lay out every line of thousands)."""
    head = ["state", noun, "job id", "age", "reason"] + ([more[0]] if more else [])
    rows = [head]
    for i in order:
        e = entries[i]
        rows.append([e.state.state, labels[i], e.state.job_id or "", age(e.state.age_s),
                     " ".join((e.state.reason or "").split())] + ([more[1](e)] if more else []))
    lines = aligned(rows)
    segments = [Segment(lines[0] + "\n", Style(bold=True))]
    start = 1
    for end in range(2, len(rows) + 1):
        if end == len(rows) or rows[end][0] != rows[start][0]:
            segments.append(Segment("\n".join(lines[start:end]) + "\n", Style.parse(_STYLE.get(rows[start][0], ""))))
            start = end
    console.print(Segments(segments), crop=False)


def show_status(console: Console, title: str, entries: list[Entry], labels: list[str], where: Callable[[Entry], str],
                every: bool = False, noun: str = "cell", more: tuple[str, Callable[[Entry], str]] | None = None,
                every_flag: str = "--all") -> None:
    """`title: N cells: counts`, the counts per place and state, then the cells listed (every one when `every`
    or the grid is small, else those that need attention) and what was left unlisted. `labels`: each cell as
    shown; `more`: a column's header and its value of a listed cell (an app's stored value), computed only for
    the cells listed; `every_flag`: what asks for every cell (`--all`, an app's `hydra.launcher.all=true`)."""
    total = Counter(e.state.state for e in entries)
    console.print(f"{title}: {plural(len(entries), noun)}" + (f": {counts_line(total)}" if entries else ""),
                  markup=False, highlight=False)
    if not entries:
        return
    console.print(counts_table(entries, where, total), markup=False, highlight=False)
    every = every or len(entries) <= LIST_EVERY_CELL_UP_TO
    order = listed(entries, every)
    if not every:
        console.print(f"need attention: {plural(len(order), noun) if order else 'none'}", highlight=False)
    if order:
        print_cells(console, entries, order, labels, noun, more)
    if not every:
        left = counts_line(total, COUNTED)
        if left:
            console.print(f"not listed: {left} ({every_flag} lists every {noun})", highlight=False)


def runs_on(resources: dict[str, Any]) -> str:
    """`slurm, h100`: the executor and partition of a cell's resources."""
    return ", ".join(str(v) for v in (resources.get("executor"), resources.get("partition")) if v)


def resource_place(spec: GridSpec) -> Callable[[Cell], str]:
    """Where a study's cell runs, as the counts name it: its option of the resource group and that option's
    executor and partition (`where=fast (slurm, fast)`), read once per option; `this machine` without a group."""
    group = spec.settings.resources
    known: dict[tuple, str] = {}

    def place(cell: Cell) -> str:
        if group is None:
            return "this machine"
        own = tuple(kv for kv in cell.extra + cell.run if kv[0].partition(".")[0] == group)
        key = (dict(cell.axes).get(group), own)
        if key not in known:
            known[key] = f"{group}={spec.option_in(cell, group)} ({runs_on(spec.resources(cell))})"
        return known[key]

    return place
