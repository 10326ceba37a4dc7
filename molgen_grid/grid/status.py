"""Tables of a plan for people (rich) and for machines (--json)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable, TypeVar

from rich.console import Console

from molgen_grid.errors import InputError
from molgen_grid.grid.cells import parse_cell_name
from molgen_grid.grid.plan import Entry, existing
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.status_view import resource_place, show_status
from molgen_grid.grid.store import SUMMARY
from molgen_grid.words import plural

T = TypeVar("T")

#: json.dumps's encoder, as its defaults make it.
_ENCODER = json.JSONEncoder()


def counts(entries: list[Entry]) -> dict[str, int]:
    return dict(Counter(e.state.state for e in entries))


def status_json(experiment: str, entries: list[Entry], partial: str | None = None) -> str:
    cells = [
        {
            "cell": e.cell.name,
            "state": e.state.state,
            "job_id": e.state.job_id,
            "age_s": None if (age := e.state.age_s) is None else round(age, 1),
            "reason": e.state.reason,
            "log": e.state.log,
            "overrides": e.cell.overrides,
        }
        for e in entries
    ]
    # One cell per line: readable, and written by the C encoder (an indented dump of 10,000 cells takes a second),
    # one encoder for all (json.dumps makes one per call).
    head = json.dumps({"experiment": experiment, "partial": partial, "counts": counts(entries)})
    lines = ",\n  ".join(map(_ENCODER.encode, cells))
    return f'{head[:-1]}, "cells": [\n  {lines}\n]}}' if cells else f'{head[:-1]}, "cells": []}}'


def short_labels(names: list[str]) -> list[str]:
    """Each cell by the parts of its name that not every cell shares (what `--force` accepts as a cell's name
    too): the `key=value` parts of its directory's name, so a setting at its default, which a name leaves out, is
    never spelled out here either; the full name where nothing would be left."""
    common = shared(name.split(",") for name in names)
    if not common:  # the usual large grid: a few names differ in every part, and nothing is taken out
        return list(names)
    return [",".join(p for p in name.split(",") if p not in common) or name for name in names]


def shared(groups: Iterable[Iterable[T]]) -> set[T]:
    """What every group holds, read no further than where nothing is left in common."""
    common: set[T] | None = None
    for group in groups:
        common = set(group) if common is None else common.intersection(group)
        if not common:
            break
    return common or set()


def short_names(entries: list[Entry]) -> list[str]:
    return short_labels([e.cell.name for e in entries])


def test_mode_cells(spec: GridSpec, entries: list[Entry], root: Path) -> dict[int, int]:
    """Cells of this grid done only in test mode: {N: how many are done with --limit N}. A test run sets the
    study's `grid.limit_key`, so its cells are other cells; a plain status says they exist instead of hiding
    them."""
    key = spec.settings.limit_key
    if key is None:
        return {}
    names = {e.cell.name for e in entries}
    found: Counter = Counter()
    for directory in existing(root) - names:
        try:
            overrides = parse_cell_name(directory)
        except ValueError:
            continue
        limit = next((o.partition("=")[2] for o in overrides if o.startswith(f"{key}=")), None)
        if limit is None or not limit.isdigit() or not (root / directory / SUMMARY).exists():
            continue
        try:
            full = spec.cell([o for o in overrides if not o.startswith(f"{key}=")]).name
        except InputError:
            continue
        if full in names:
            found[int(limit)] += 1
    return dict(found)


def test_mode_hint(spec: GridSpec, entries: list[Entry], root: Path) -> str | None:
    """`(also: 3 done with --limit 2)` when test runs of these cells exist."""
    cells = test_mode_cells(spec, entries, root)
    if not cells:
        return None
    return "also " + ", ".join(f"{n} done with --limit {limit}" for limit, n in sorted(cells.items())) + \
        " (test mode: add --limit N to see them)"


def print_status(console: Console, spec: GridSpec, entries: list[Entry], hint: str | None = None,
                 every: bool = False) -> None:
    """The status people read (status_view.py), each cell by its short name; the settings every cell shares said
    once below it."""
    place = resource_place(spec)
    show_status(console, f"experiment {spec.experiment}", entries, short_names(entries), lambda e: place(e.cell),
                every)
    if len(entries) > 1:
        common = shared(e.cell.axes + e.cell.extra for e in entries)
        if common:
            console.print(f"[dim]every cell: {','.join(sorted(f'{k}={v}' for k, v in common))}  "
                          f"(full names: --status --json)[/]")
    if hint:
        console.print(hint)


def print_plan(console: Console, experiment: str, entries: list[Entry], notes: dict[str, str] | None = None) -> None:
    """What would run and why (`notes`: what a cell's request grows to, by name), then what is left alone; a
    cell given up says so."""
    runs = [e for e in entries if e.runs]
    notes = notes or {}
    console.print(f"experiment {experiment}: {len(runs)} of {plural(len(entries), 'cell')} would run")
    if runs:  # plain text (names, reasons, requests), written as is: rich would render 10,000 lines one by one
        console.file.write("".join(f"  run  {e.cell.name}  ({'; '.join(filter(None, (e.why, notes.get(e.cell.name))))})"
                                   "\n" for e in runs))
    given_up = [e for e in entries if e.given_up]
    if given_up:
        console.out("\n".join(f"  skip  {e.cell.name}  ({e.state.reason})" for e in given_up), highlight=False)
    left = Counter(e.state.state for e in entries if not e.runs)
    if left:
        console.print("left alone: " + ", ".join(f"{n} {s}" for s, n in sorted(left.items())))
