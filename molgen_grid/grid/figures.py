"""The figures a grid shows: dotted paths into summary.json named in the config (`grid.report.figures`; the
first is the headline that ranks the cells and ends a finished cell's console line), or, when a study names
none, every number its task returned, in the task's order. Light on purpose: a run reads them without
importing the report's pandas.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from molgen_grid.grid.dotted import value_at
from molgen_grid.grid.task import SUMMARY_KEYS

#: How deep into a task's nested figures the engine looks for numbers when a study names none.
DISCOVERY_DEPTH = 3


@dataclass
class Figure:
    """One headline figure: a dotted path into summary.json, as a spread ({median, min, max, values}), the list
    of its repeats' values or a number; `lower_is_better` for times and memory (a speed-up is then baseline / cell)."""

    path: str
    #: The column it heads: the path's last part, or as many parts as set it apart from the report's others.
    name: str
    lower_is_better: bool = False

    def node(self, summary: dict) -> Any:
        return value_at(summary, self.path)

    def read(self, summary: dict) -> tuple[float | None, float | None, float | None]:
        node = self.node(summary)
        if isinstance(node, dict):
            return node.get("median"), node.get("min"), node.get("max")
        if repeats(node):
            return statistics.median(node), min(node), max(node)
        return (node, node, node) if isinstance(node, (int, float)) else (None, None, None)

    def values(self, summary: dict) -> list[float | None]:
        """Every timed repeat's value (a plain number counts as one)."""
        node = self.node(summary)
        if isinstance(node, dict):
            return list(node.get("values") or [])
        if repeats(node):
            return list(node)
        return [node] if isinstance(node, (int, float)) else []


def repeats(node: Any) -> bool:
    """A figure written as the plain list of its repeats' values (a study names it in `grid.report.figures`)."""
    return isinstance(node, list) and bool(node) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in node)


def short_name(path: str, paths: list[str]) -> str:
    """The path's shortest dotted tail that no other path ends with: `rmsd.median_min_rmsd_A` beside
    `reference_point.median_min_rmsd_A`, plain `step_ms` when nothing else ends so."""
    parts = path.split(".")
    for n in range(1, len(parts)):
        tail = ".".join(parts[-n:])
        if not any(other != path and (other == tail or other.endswith("." + tail)) for other in paths):
            return tail
    return path


def _is_figure(node: Any) -> bool:
    return (isinstance(node, (int, float)) and not isinstance(node, bool)) or (
        isinstance(node, dict) and isinstance(node.get("median"), (int, float)))


def discovered(summary: dict) -> list[str]:
    """The dotted paths of every number (or {median, ...} spread) a task returned, in its order."""
    found: list[str] = []

    def walk(node: Any, prefix: str, depth: int) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if _is_figure(value):
                found.append(path)
            elif isinstance(value, dict) and depth < DISCOVERY_DEPTH:
                walk(value, path + ".", depth + 1)

    walk({k: v for k, v in summary.items() if k not in SUMMARY_KEYS}, "", 1)
    return found


def figures_of(settings: Any, summaries: list[dict] = ()) -> list[Figure]:
    """The report's figures (`grid.report.figures`, the first ranks the cells; when a study names none, those
    its summaries hold) with their direction, each named apart from the others, so two never share a column."""
    paths = list(settings.report.figures) or list(dict.fromkeys(p for s in summaries for p in discovered(s)))
    lower = set(settings.report.lower_is_better or [])
    return [Figure(p, short_name(p, paths), p in lower) for p in paths]


def headline(settings: Any) -> Figure | None:
    """The figure a finished cell's run line shows: the study's first, or None (each cell's own first)."""
    figures = figures_of(settings)
    return figures[0] if figures else None


def headline_of(summary: dict) -> Figure | None:
    """The first figure a cell's own summary holds, for a study that names none."""
    paths = discovered(summary)
    return Figure(paths[0], paths[0].rpartition(".")[2]) if paths else None
