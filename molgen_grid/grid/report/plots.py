"""The report's pictures: each cell's primary figure with its spread (on a log axis where the figures span more
than 10x), and a heatmap over two settings.

Both are laid out so that every label stays inside the image (long axis titles are wrapped, the figure is
saved with a tight bounding box) and every number on the heatmap is readable on its colour (black on light
cells, white on dark ones).
"""
from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd

from molgen_grid.grid.report.tables import HIGH, LOW, Report
from molgen_grid.grid.store import atomic_write_bytes

THROUGHPUT, HEATMAP = "throughput.png", "heatmap.png"
#: Above this luminance (0..1) of a heatmap cell its number is written in black.
LIGHT = 0.5
#: Figures that span more than this (max / min) are drawn on a log axis.
LOG_SPAN = 10


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def throughput(report: Report, title: str, out: Path) -> bool:
    """Each ranked cell's primary figure (median, min-max bars, the baseline in orange); False when none."""
    drawn = throughput_axes(report, title)
    if drawn is None:
        return False
    _save(_pyplot(), drawn.figure, out / THROUGHPUT)
    return True


def throughput_axes(report: Report, title: str) -> Any:
    """The throughput plot's axes (None when no cell is ranked), on a log scale where the figures span more than
    LOG_SPAN: on a linear one the small bars, the baseline's among them, would shrink to nothing."""
    primary = report.figures[0].name
    frame = report.frame
    done = frame[frame["state"].isin(report.ranked) & frame[primary].notna()]
    if done.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(done) + 1.8))
    errors = [done[primary] - done[primary + LOW], done[primary + HIGH] - done[primary]]
    colors = ["tab:orange" if c in report.baselines.values() else "tab:blue" for c in done["cell"]]
    log = wide_span(pd.concat([done[primary + LOW], done[primary], done[primary + HIGH]]))
    ax.barh(report.labels[done.index], done[primary], xerr=errors, color=colors, capsize=3, log=log)
    better = "lower is better" if report.figures[0].lower_is_better else "higher is better"
    scale = "; log scale" if log else ""
    ax.set_xlabel("\n".join(textwrap.wrap(f"{primary} ({better}): median over the timed repeats, bars from min "
                                          f"to max; orange: the baseline{scale}", 70)))
    ax.set_title(title)
    ax.invert_yaxis()
    return ax


def wide_span(values: pd.Series) -> bool:
    """Whether positive figures span more than LOG_SPAN (max / min), so a linear axis would hide the small ones."""
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(numbers)) and numbers.min() > 0 and numbers.max() / numbers.min() > LOG_SPAN


def heatmap(pivot: pd.DataFrame, primary: str, title: str, out: Path) -> None:
    """The primary figure over two settings (tables.heatmap_table), each number written on its cell."""
    keys = [pivot.index.name, pivot.columns.name]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.7 * len(pivot.columns) + 3, 0.7 * len(pivot.index) + 2))
    image = ax.imshow(pivot.values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(pivot.columns)), pivot.columns, rotation=30, ha="right")
    ax.set_yticks(range(len(pivot.index)), pivot.index)
    ax.set_xlabel(keys[1])
    ax.set_ylabel(keys[0])
    ax.set_title(title)
    for (i, j), value in pd.DataFrame(pivot.values).stack().items():
        red, green, blue, _ = image.cmap(image.norm(value))
        luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
        ax.text(j, i, f"{value:.4g}", ha="center", va="center", color="black" if luminance > LIGHT else "white")
    fig.colorbar(image, ax=ax, label=f"{primary} (mean of replicates' medians)")
    _save(plt, fig, out / HEATMAP)


def _save(plt: Any, fig: Any, path: Path) -> None:
    """The picture drawn in memory, then written atomically: savefig would write through a link at `path`."""
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, image.getvalue())
