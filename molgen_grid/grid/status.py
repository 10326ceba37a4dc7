"""Tables of a plan for people (rich) and for machines (--json)."""
from __future__ import annotations

import json
from collections import Counter

from rich.console import Console
from rich.table import Table

from molgen_grid.grid.plan import Entry, setting_keys
from molgen_grid.grid.spec import GridSpec

_STYLE = {
    "done": "green", "unsupported": "cyan", "queued": "yellow", "running": "yellow", "requeued": "yellow",
    "held": "yellow", "interrupted": "red", "failed": "red", "stale": "magenta", "missing": "dim",
}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def counts(entries: list[Entry]) -> dict[str, int]:
    return dict(Counter(e.state.state for e in entries))


def status_json(experiment: str, entries: list[Entry], partial: str | None = None) -> str:
    cells = [
        {
            "cell": e.cell.name,
            "state": e.state.state,
            "job_id": e.state.job_id,
            "age_s": None if e.state.age_s is None else round(e.state.age_s, 1),
            "reason": e.state.reason,
            "log": e.state.log,
            "overrides": e.cell.overrides,
        }
        for e in entries
    ]
    return json.dumps({"experiment": experiment, "partial": partial, "cells": cells, "counts": counts(entries)},
                      indent=1)


def short_labels(settings: list[dict[str, str]], keys: list[str], names: list[str]) -> list[str]:
    """Each cell by the settings that differ among these cells (what `--force` accepts as a cell's name too);
    the full names when nothing differs."""
    varying = [k for k in keys if len({str(item[k]) for item in settings}) > 1]
    if not varying:
        return names
    return [",".join(f"{k}={item[k]}" for k in varying) for item in settings]


def short_names(spec: GridSpec, entries: list[Entry]) -> list[str]:
    keys = setting_keys(entries)
    return short_labels([spec.settings_of(e.cell, keys) for e in entries], keys, [e.cell.name for e in entries])


def print_status(console: Console, spec: GridSpec, entries: list[Entry]) -> None:
    table = Table(title=f"experiment {spec.experiment}: {len(entries)} cells", title_justify="left")
    for column in ("cell", "state", "job id", "age", "reason"):
        table.add_column(column, overflow="fold")
    for e, short in zip(entries, short_names(spec, entries)):
        style = _STYLE.get(e.state.state, "")
        table.add_row(short, f"[{style}]{e.state.state}[/]", e.state.job_id or "", _age(e.state.age_s),
                      e.state.reason or "")
    console.print(table)
    if len(entries) > 1:
        common = set.intersection(*({f"{k}={v}" for k, v in e.cell.axes + e.cell.extra} for e in entries))
        console.print(f"[dim]every cell: {','.join(sorted(common))}  (full names: --status --json)[/]")
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts(entries).items())) or "no cells")


def print_plan(console: Console, experiment: str, entries: list[Entry]) -> None:
    runs = [e for e in entries if e.runs]
    console.print(f"experiment {experiment}: {len(runs)} of {len(entries)} cells would run")
    for e in runs:
        console.print(f"  run  {e.cell.name}  [dim]({e.why})[/]")
    left = Counter(e.state.state for e in entries if not e.runs)
    if left:
        console.print("left alone: " + ", ".join(f"{n} {s}" for s, n in sorted(left.items())))
