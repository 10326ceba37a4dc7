"""The figures a grid shows: dotted paths into summary.json named in the config (`grid.report.figures`; the
first is the headline that ranks the cells and ends a finished cell's console line). Light on purpose: a run
reads them without importing the report's pandas.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from molgen_grid.grid.dotted import value_at


@dataclass
class Figure:
    """One headline figure: a dotted path into summary.json, as a spread ({median, min, max, values}) or a
    number; `lower_is_better` for times and memory (a speed-up is then baseline / cell)."""

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
        return (node, node, node) if isinstance(node, (int, float)) else (None, None, None)

    def values(self, summary: dict) -> list[float | None]:
        """Every timed repeat's value (a plain number counts as one)."""
        node = self.node(summary)
        if isinstance(node, dict):
            return list(node.get("values") or [])
        return [node] if isinstance(node, (int, float)) else []


def short_name(path: str, paths: list[str]) -> str:
    """The path's shortest dotted tail that no other path ends with: `rmsd.median_min_rmsd_A` beside
    `reference_point.median_min_rmsd_A`, plain `step_ms` when nothing else ends so."""
    parts = path.split(".")
    for n in range(1, len(parts)):
        tail = ".".join(parts[-n:])
        if not any(other != path and (other == tail or other.endswith("." + tail)) for other in paths):
            return tail
    return path


def figures_of(settings: Any) -> list[Figure]:
    """The report's figures (`grid.report.figures`, the first ranks the cells) with their direction, each
    named apart from the others, so two figures never share a column."""
    paths = list(settings.report.figures)
    lower = set(settings.report.get("lower_is_better") or [])
    return [Figure(p, short_name(p, paths), p in lower) for p in paths]
