"""From a finished grid to an answer under artifacts/: report.csv, report.md, plots, summary copies, the map.

tables.py computes (pandas, scipy), markdown.py and plots.py present, artifacts.py writes and tidies; this
module checks the request (`--compare`, `--heatmap`) before anything is written and says what it wrote, with
paths relative to the project. Every file is written whole and atomically (store.atomic_write_text): the tree is
git-tracked and may be shared, and a link planted at a report's path is replaced, never written through.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from rich.console import Console

from molgen_grid.grid.plan import Entry
from molgen_grid.grid.report import artifacts, plots, tables
from molgen_grid.grid.report.markdown import markdown
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.state import STALE
from molgen_grid.grid.store import atomic_write_text, folder
from molgen_grid.words import plural

__all__ = ["report"]
#: The numbers the heatmap shows, beside it.
HEATMAP_TABLE = "heatmap.csv"


def shown(path: Path, cwd: Path) -> str:
    """A path as a person reads it: relative to the project when it is inside it."""
    return os.path.relpath(path, cwd) if path.is_relative_to(cwd) else str(path)


def report(console: Console, spec: GridSpec, entries: list[Entry], cwd: Path, artifacts_dir: Path,
           compares: list[str], heatmap: list[str], limit: int | None, experiments: list[str],
           plan: Callable[[str], tuple[GridSpec, list[Entry]]]) -> None:
    for text in compares:
        tables.check_compare(text, spec, entries)
    if heatmap:
        tables.check_heatmap(heatmap, entries)
    built = tables.build(spec, entries, compares)
    out = folder(artifacts.out_dir(artifacts_dir, spec.experiment, limit))
    title = spec.experiment + (f" (test mode: --limit {limit})" if limit else "")
    drawn = [plots.THROUGHPUT] if plots.throughput(built, title, out) else []
    tables_written = ["report.csv"]
    heat = tables.heatmap_table(built, heatmap)
    if heat is not None:
        pivot, held = heat
        group = ", ".join(f"{k}={v}" for k, v in held.items())
        plots.heatmap(pivot, built.figures[0].name, f"{title} ({group})" if group else title, out)
        atomic_write_text(out / HEATMAP_TABLE, pivot.to_csv())
        drawn.append(plots.HEATMAP)
        tables_written.append(HEATMAP_TABLE)
    atomic_write_text(out / "report.csv", built.frame.to_csv(index=False))
    atomic_write_text(out / "report.md", markdown(spec, built, drawn, limit))
    copies = artifacts.copy_summaries(out, entries, set(built.frame["cell"]))
    written = [*tables_written, "report.md", *drawn]
    artifacts.replace_files(out, written + copies)
    atomic_write_text(artifacts_dir / "README.md", artifacts.experiment_map(experiments, plan, artifacts_dir))

    console.print(f"experiment {spec.experiment}: {plural(len(built.frame), 'cell')} reported"
                  + (f" ({', '.join(f'{n} {s}' for s, n in built.pending.items())} not yet)" if built.pending else "")
                  + (f", test mode (--limit {limit})" if limit else ""))
    if built.pending.get(STALE):
        console.print(f"[yellow]left out: {plural(built.pending[STALE], 'stale cell')}; {tables.STALE_LEFT_OUT}[/]")
    for note in built.baseline_notes:
        console.print(f"[yellow]{note}[/]")
    for best in built.best:
        console.print(f"best {'configuration' if tables.POOLED_MEDIAN in best else 'cell'}: "
                      f"{tables.best_name(built.labels, best, built.pool)}")
    for text, pairs in built.comparisons.items():
        console.print(f"\n{text}: {plural(len(pairs), 'matched pair')}")
        if len(pairs):
            console.print(pairs.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
            console.print(f"median change: {tables.median_changes(pairs)}")
    for name in written:
        console.print(f"wrote {shown(out / name, cwd)}")
    console.print(f"wrote {shown(artifacts_dir / 'README.md', cwd)}")
