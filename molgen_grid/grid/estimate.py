"""Time left: how long the cells still to run will take, guessed from the cells of the same experiment that ran
on the same resources, and afterwards how far off those guesses were.

No tool of the field says this, and a grid's cost is what people ask before they launch it. The guess is only as
good as its sample, so every figure names what it rests on (`median 2.3 min of 9 done`), and a resource option
where nothing ran yet says "no estimate" rather than borrow another's times. A local run's cells take turns on
their device (the sum of their times); a scheduler's run `grid.slurm.array_parallelism` at a time at best, and
the partition's free slots are unknown here, so that figure is a bound, said as such. Each claim records the
median it was launched under (`estimate_s`), so once cells finish their error is shown beside the next guess.
"""
from __future__ import annotations

import heapq
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from molgen_grid.errors import InputError
from molgen_grid.grid.cells import Cell, parse_cell_name
from molgen_grid.grid.plan import Entry, existing
from molgen_grid.grid.resources import executor_of
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.state import IN_FLIGHT, RUNNING
from molgen_grid.grid.store import SUMMARY, CellStore, as_record, read_json
from molgen_grid.words import plural

#: What a claim's line in attempts.jsonl records: the run time its cell was expected to take.
ESTIMATE_KEY = "estimate_s"


def run_time(summary: Mapping[str, Any] | None) -> float | None:
    """Seconds a finished cell ran (its summary's clock: composing its config and its task); None for an
    unsupported or unreadable one, whose time says nothing of a cell that runs."""
    if not summary or summary.get("status") not in ("ok", "done"):
        return None
    started, finished = summary.get("started_at"), summary.get("finished_at")
    if not isinstance(started, (int, float)) or not isinstance(finished, (int, float)) or finished < started:
        return None
    return float(finished - started)


def time_left(median_s: float, waiting: int, running_for: Iterable[float], parallelism: int) -> float:
    """Seconds until the last of these cells ends: `parallelism` slots, each running cell taking what is left of
    the median, then each waiting cell a median in the slot that frees first (1 slot: the sum)."""
    slots = sorted(max(0.0, median_s - elapsed) for elapsed in running_for)
    busy = slots[:parallelism] + [0.0] * max(0, parallelism - len(slots))
    queue = slots[parallelism:]  # running beyond the slots (another sweep's): they wait as what is left of them
    heapq.heapify(busy)
    for seconds in queue + [median_s] * waiting:
        heapq.heappush(busy, heapq.heappop(busy) + seconds)
    return max(busy) if busy else 0.0


def off_by(pairs: Iterable[tuple[float, float]]) -> float | None:
    """The median relative error of (estimate, actual) pairs, +0.12 for runs 12% longer than estimated."""
    errors = [actual / estimate - 1 for estimate, actual in pairs if estimate > 0]
    return statistics.median(errors) if errors else None


def duration(seconds: float) -> str:
    """`45s`, `2.3m`, `1.5h`, `2.1d`: as precise as a guess deserves, in the units of a run's lines."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"


@dataclass
class Group:
    """The cells of one resource option (`where=h100`, in one test mode): what its finished cells took, what is
    left of it, and how its executor runs them."""

    label: str
    resources: dict[str, Any]
    parallelism: int
    times: list[float] = field(default_factory=list)
    waiting: set[str] = field(default_factory=set)
    running: dict[str, float] = field(default_factory=dict)

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    @property
    def cells(self) -> int:
        return len(self.waiting) + len(self.running)

    def seconds_left(self) -> float | None:
        median = self.median
        return None if median is None else time_left(median, len(self.waiting), self.running.values(),
                                                     self.parallelism)

    def line(self) -> str:
        """`time left where=h100 (slurm, h100): ~14m for 6 cells (median 2.3m of 9 done) at 32 at a time ...`"""
        where = ", ".join(str(v) for v in (self.resources.get("executor"), self.resources.get("partition")) if v)
        head = f"time left {self.label} ({where}): "
        median, left = self.median, self.seconds_left()
        if median is None or left is None:
            return head + f"no estimate for {plural(self.cells, 'cell')} (none done yet)"
        text = head + f"~{duration(left)} for {plural(self.cells, 'cell')} (median {duration(median)} of " \
                      f"{len(self.times)} done)"
        if self.parallelism == 1:
            return text + ", one after another"
        text += f" at {self.parallelism} at a time (grid.slurm.array_parallelism; the partition's free slots are " \
                f"unknown: not a promise)"
        gres = self.resources.get("gres")
        busy = median * len(self.waiting) + sum(max(0.0, median - e) for e in self.running.values())
        return text + (f", {gres} x {busy / 3600:.3g} h" if gres else "")


@dataclass
class Estimator:
    """The experiment's finished cells by resource option and the grid's cells left, kept up to date as a run
    goes. `key_of(cell)`: the option (and test mode) a cell runs in; `option_of(cell)`: its label, resources and
    parallelism."""

    root: Path
    key_of: Callable[[Cell], str]
    option_of: Callable[[Cell], tuple[str, dict[str, Any], int]]
    parse: Callable[[list[str]], Cell]
    groups: dict[str, Group] = field(default_factory=dict)
    #: (estimate at launch, actual run time) of each finished cell whose claim recorded one.
    pairs: list[tuple[float, float]] = field(default_factory=list)

    def read(self, entries: list[Entry]) -> "Estimator":
        """Every finished cell of the experiment (the grid's and any other of its directories), then the grid's
        cells left to run or in flight."""
        self.scan(entries)
        now = time.time()
        for e in entries:
            if e.state.state == RUNNING and not e.runs:
                self.group(e.cell).running[e.cell.name] = now - (e.state.since or now)
            elif e.runs or e.state.state in IN_FLIGHT:
                self.group(e.cell).waiting.add(e.cell.name)
        return self

    def scan(self, entries: list[Entry]) -> "Estimator":
        """The run time of every finished cell of the experiment, and its estimate at launch where it has one."""
        known = {e.store.name: e.cell for e in entries}
        self.groups, self.pairs = {}, []
        for name in sorted(existing(self.root)):
            summary = as_record(read_json(os.path.join(self.root, name, SUMMARY)))
            if summary is None:  # none yet, or the engine's own folders (.slurm/)
                continue
            seconds = run_time(summary)
            cell = (known.get(name) or self._parsed(name)) if seconds is not None else None
            if cell is None:
                continue
            self.group(cell).times.append(seconds)
            launched = CellStore(self.root, name).attempt(summary.get("attempt")) or {}
            if isinstance(launched.get(ESTIMATE_KEY), (int, float)):
                self.pairs.append((launched[ESTIMATE_KEY], seconds))
        return self

    def _parsed(self, name: str) -> Cell | None:
        try:
            return self.parse(parse_cell_name(name))
        except (ValueError, InputError):
            return None

    def group(self, cell: Cell) -> Group:
        key = self.key_of(cell)
        if key not in self.groups:
            self.groups[key] = Group(*self.option_of(cell))
        return self.groups[key]

    def median_of(self, cell: Cell) -> float | None:
        """What the cell is expected to take now (recorded in its claim)."""
        return self.group(cell).median

    def finished(self, entry: Entry) -> str | None:
        """A local cell of this run ended: its time joins its option's; the time left of the local cells still to
        run, one after another (`~3.0s left`), or None when none is left."""
        group = self.group(entry.cell)
        group.waiting.discard(entry.cell.name)
        group.running.pop(entry.cell.name, None)
        seconds = run_time(entry.store.summary())
        if seconds is not None:
            group.times.append(seconds)
        left = [g.seconds_left() for g in self.groups.values() if g.cells and g.parallelism == 1]
        if not left:
            return None
        return "no estimate of the time left" if None in left else f"~{duration(sum(left))} left"

    def lines(self) -> list[str]:
        """One line per resource option with cells left."""
        return [g.line() for g in self.groups.values() if g.cells]

    def accuracy(self) -> str | None:
        """`estimates were off by a median of +12% (8 cells)`, once cells launched with an estimate finished."""
        error = off_by(self.pairs)
        return None if error is None else \
            f"estimates were off by a median of {error:+.0%} ({plural(len(self.pairs), 'cell')})"


def of_study(spec: GridSpec, root: Path, executors: Mapping[str, Any]) -> Estimator:
    """The estimator of a study's experiment: cells grouped by their option of the resource group and their test
    mode (`--limit N` cells run shorter), a scheduler's at the grid's array parallelism."""
    group, limit = spec.settings.resources, spec.settings.limit_key

    def key_of(cell: Cell) -> str:
        option = spec.option_in(cell, group) if group else ""
        return f"{option}|{dict(cell.extra).get(limit, '') if limit else ''}"

    def option_of(cell: Cell) -> tuple[str, dict[str, Any], int]:
        resources = spec.resources(cell)
        executor = executors.get(executor_of(resources))
        parallelism = 1 if executor is None or executor.blocking else int(spec.settings.slurm.array_parallelism)
        label = f"{group}={spec.option_in(cell, group)}" if group else "this machine"
        test_mode = dict(cell.extra).get(limit) if limit else None
        return label + (f" ({limit}={test_mode})" if test_mode else ""), resources, parallelism

    return Estimator(root, key_of, option_of, spec.cell)
