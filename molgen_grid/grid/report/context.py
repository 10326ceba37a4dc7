"""Where a report's figures come from and what its ranking figure measures, read from the cells' summaries.

The study writes both in each summary (the engine knows no word of devices or models): a mapping of context
lines (`grid.report.context`: name to value) and one from each figure's dotted path to what it counts and what
its clock covers (`grid.report.definitions`). The report lists each name once with its distinct values, counted
by the cells that have each when they differ, so a reader sees at once whether the cells ran alike.
"""
from __future__ import annotations

from molgen_grid.grid.dotted import value_at
from molgen_grid.grid.figures import Figure
from molgen_grid.words import plural

#: Each name's distinct values, with how many cells have each, in the order the cells first say them.
Tally = dict[str, dict[str, int]]


def tally(summaries: list[dict], path: str | None) -> Tally:
    """Each name of the mapping at `path` in the summaries, with its distinct values (None: not said)."""
    found: Tally = {}
    for summary in summaries:
        mapping = value_at(summary, path) if path else None
        for name, value in (mapping.items() if isinstance(mapping, dict) else ()):
            if value is not None:
                values = found.setdefault(str(name), {})
                values[str(value)] = values.get(str(value), 0) + 1
    return found


def said(values: dict[str, int]) -> str:
    """One value as it is; several, each with its cells: `a (3 cells); b (1 cell)`."""
    if len(values) == 1:
        return next(iter(values))
    return "; ".join(f"{value} ({plural(count, 'cell')})" for value, count in values.items())


def context_section(context: Tally) -> list[str]:
    """The report's "Context" section: each line the summaries hold, once ([] when they hold none)."""
    if not context:
        return []
    return ["## Context", ""] + [f"- {name}: {said(values)}" for name, values in context.items()] + [""]


def ranking_line(figure: Figure, definitions: Tally) -> str:
    """The figure that ranks the cells, and what it counts and its clock covers where the summaries say."""
    meaning = definitions.get(figure.path)
    where = f" (`{figure.path}`)" if figure.path != figure.name else ""
    return f"Ranked by `{figure.name}`{where}" + (f": {said(meaning)}." if meaning else ".")

