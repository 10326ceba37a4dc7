"""The report's numbers: one row per finished cell, speed-ups over the baseline with their statistics, the
best cell, and comparisons of matched pairs along one axis.

The engine knows no study: the figures are dotted paths into summary.json named in the config
(`grid.report.figures`; the first ranks the cells, `grid.report.lower_is_better` names the times and sizes).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from molgen_grid.errors import InputError
from molgen_grid.grid import statistics
from molgen_grid.grid.dotted import value_at
from molgen_grid.grid.figures import Figure, figures_of
from molgen_grid.grid.follow import census
from molgen_grid.grid.plan import Entry, setting_keys
from molgen_grid.grid.report.context import Tally, tally
from molgen_grid.grid.overrides import close_match
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.state import COMPLETE, DONE, STALE
from molgen_grid.grid.status import short_labels

MEDIAN, LOW, HIGH = "", "_min", "_max"
#: report.csv's columns of the comparison with the baseline, and the statistics.Comparison attribute of each.
#: Where replicates are pooled: the primary figure over all of a configuration's repeats (median, min, max).
POOLED_MEDIAN, POOLED_LOW, POOLED_HIGH = "pooled_median", "pooled_min", "pooled_max"
SPEEDUP_COLUMNS = {"speedup": "speedup", "speedup_low": "low", "speedup_high": "high", "p_value": "p_value",
                   "p_holm": "p_adjusted", "within_noise": "within_noise"}
#: Between a cell's warnings in report.csv's `warnings` column.
WARNING_SEPARATOR = " | "
#: Why a report leaves stale cells out, and the two ways to have them in it.
STALE_LEFT_OUT = ("stale cells ran before their config, code, inputs or libraries changed (--status says which): "
                  "report them as they are with grid.stale=keep, or rerun them with a plain run (the same command "
                  "without --report)")


def finished_states(settings: Any) -> set[str]:
    """The states a report shows: done and unsupported, and stale cells where `grid.stale=keep` keeps them."""
    return COMPLETE | ({STALE} if settings.stale == "keep" else set())


def finished_summaries(spec: GridSpec, entries: list[Entry]) -> list[dict]:
    """The summaries of the cells a report shows (where a study names no figures, its figures are theirs)."""
    shown = finished_states(spec.settings)
    return [s for s in (e.store.summary() for e in entries if e.state.state in shown) if s is not None]


def ranked_states(settings: Any) -> set[str]:
    """The states whose figures rank and compare: done, and stale where kept."""
    return {DONE} | ({STALE} if settings.stale == "keep" else set())


def report_frame(spec: GridSpec, entries: list[Entry], figures: list[Figure]
                 ) -> tuple[pd.DataFrame, dict[str, list[float | None]]]:
    """One row per finished cell (its name, state, reason, every setting, every figure, its warnings: the study's
    and a figure's repeats spread too wide, statistics.spread_warning), and the primary figure's repeat values by
    cell (for the statistics)."""
    keys = setting_keys(entries)
    report = spec.settings.report
    warnings = report.get("warnings")
    shown = finished_states(spec.settings)
    rows, values = [], {}
    for e in entries:
        if e.state.state not in shown:
            continue
        summary = e.store.summary() or {}
        row: dict[str, Any] = {"cell": e.cell.name, "state": e.state.state, "reason": e.state.reason,
                               **spec.settings_of(e.cell, keys)}
        for figure in figures:
            median, low, high = figure.read(summary)
            row.update({figure.name + MEDIAN: median, figure.name + LOW: low, figure.name + HIGH: high})
        values[e.cell.name] = figures[0].values(summary)
        row["timed_repeats"] = len(values[e.cell.name])
        spreads = [statistics.spread_warning(f.name, f.values(summary), report.spread_ratio, report.spread_cv)
                   for f in figures]
        own = list(value_at(summary, warnings) or []) if warnings else []
        row["warnings"] = WARNING_SEPARATOR.join(own + [w for w in spreads if w])
        rows.append(row)
    columns = ["cell", "state", "reason", *keys] + [f.name + s for f in figures for s in (MEDIAN, LOW, HIGH)] \
        + ["timed_repeats", "warnings"]
    return pd.DataFrame(rows, columns=columns), values


def label(frame: pd.DataFrame) -> pd.Series:
    """Each reported cell by the parts of its name that vary among the reported cells, as `--status` shows it."""
    labels = short_labels(list(frame["cell"]))
    return pd.Series(labels, index=frame.index, dtype=object)


def with_speedup(frame: pd.DataFrame, values: dict[str, list[float | None]], primary: Figure,
                 baselines: dict[str, str | None], ranked: set[str],
                 configurations: dict[str, tuple[str, ...]] | None = None) -> tuple[pd.DataFrame, int]:
    """Each cell's speed-up in the primary figure over its baseline, with its 95% interval, the rank test's
    p-value over the repeats, that p adjusted for the report's number of comparisons (Holm, `p_holm`), and
    whether the difference is within the noise by the adjusted p (see statistics.py); and the number of
    comparisons adjusted for.

    `configurations` names each cell's configuration where cells are replicates of one (grid.report.pool): the
    test and the interval then pool the repeats of every ranked replicate of the cell's configuration and of
    the baseline's, and each configuration counts once among the comparisons that Holm adjusts for."""
    out = frame.copy()
    named = configurations or {}

    def configuration_of(cell: str) -> tuple[str, ...]:
        """The cell's configuration; without pooling (or for a baseline that did not finish) the cell alone."""
        return named.get(cell, (cell,))

    pooled: dict[tuple[str, ...], list[float | None]] = {}
    processes: dict[tuple[str, ...], int] = {}
    for cell, state in zip(out["cell"], out["state"]):
        if state in ranked:
            pooled.setdefault(configuration_of(cell), []).extend(values.get(cell) or [])
            processes[configuration_of(cell)] = processes.get(configuration_of(cell), 0) + 1
    pairs = {(configuration_of(cell), configuration_of(baselines[cell]))
             for cell, state in zip(out["cell"], out["state"]) if state in ranked and baselines.get(cell)}
    tests = {pair: statistics.compare(pooled.get(pair[0]), pooled.get(pair[1]), primary.lower_is_better)
             for pair in sorted(pairs)}
    family = [pair for pair in tests if pair[0] != pair[1]]  # a baseline's likeness to itself is no test
    tests.update(zip(family, statistics.adjusted([tests[pair] for pair in family])))
    results = [tests.get((configuration_of(cell), configuration_of(baselines[cell])))
               if state in ranked and baselines.get(cell) is not None else None
               for cell, state in zip(out["cell"], out["state"])]
    for column, attribute in SPEEDUP_COLUMNS.items():
        out[column] = pd.Series([None if r is None else getattr(r, attribute) for r in results],
                                index=out.index, dtype=object)
    out["pooled_processes"] = [processes.get(configuration_of(cell)) if state in ranked else None
                               for cell, state in zip(out["cell"], out["state"])]
    out["pooled_repeats"] = [len(statistics.finite(pooled.get(configuration_of(cell)))) if state in ranked else None
                             for cell, state in zip(out["cell"], out["state"])]
    if configurations:
        # what a configuration's replicates say together: the best configuration is chosen and shown by these
        spans = {key: statistics.finite(repeats) for key, repeats in pooled.items()}
        for column, pick in ((POOLED_MEDIAN, lambda v: float(pd.Series(v).median())), (POOLED_LOW, min),
                             (POOLED_HIGH, max)):
            out[column] = [pick(spans[configuration_of(cell)]) if state in ranked and spans.get(configuration_of(cell))
                           else None for cell, state in zip(out["cell"], out["state"])]
        out["baseline_configuration"] = [
            baselines.get(cell) is not None and configuration_of(cell) == configuration_of(baselines[cell])
            for cell in out["cell"]]
    return out, len(family)


def is_true(flag: Any) -> bool:
    return flag is not None and not pd.isna(flag) and bool(flag)


def missing(value: Any) -> bool:
    return value is None or pd.isna(value)


def speedup_text(row: pd.Series) -> str:
    """`1.23x [1.10, 1.35]`, `~` when within the noise, `(1 repeat)` when no test could judge it."""
    value = row.get("speedup")
    if missing(value):
        return ""
    text = f"{value:.2f}x"
    if not missing(row.get("speedup_low")):
        text += f" [{row['speedup_low']:.2f}, {row['speedup_high']:.2f}]"
    if missing(row.get("p_value")):
        return text + " (1 repeat)"
    return text + (" ~" if is_true(row.get("within_noise")) else "")


def best_row(frame: pd.DataFrame, primary: Figure, ranked: set[str]) -> pd.Series | None:
    """The finished cell with the best primary figure; where replicates are pooled, a cell of the configuration
    whose pooled repeats have the best median (one replicate's luck never names the best)."""
    column = POOLED_MEDIAN if POOLED_MEDIAN in frame else primary.name
    done = frame[frame["state"].isin(ranked)].dropna(subset=[column])
    if done.empty:
        return None
    scores = done[column].astype(float)
    return done.loc[scores.idxmin() if primary.lower_is_better else scores.idxmax()]


def best_name(labels: pd.Series, best: pd.Series, pool: list[str]) -> str:
    """The best cell's label, or where replicates are pooled its configuration's (the label less the pooled
    settings)."""
    if POOLED_MEDIAN not in best:
        return str(labels[best.name])
    return ",".join(part for part in str(labels[best.name]).split(",") if part.partition("=")[0] not in pool)


def best_figure(best: pd.Series, primary: str) -> float:
    """The figure the best cell was chosen by: its median, or its configuration's pooled median."""
    return float(best[POOLED_MEDIAN] if POOLED_MEDIAN in best else best[primary])


def best_rows(frame: pd.DataFrame, primary: Figure, ranked: set[str], within: list[str]) -> list[pd.Series]:
    """The best finished cell of each value of the `within` settings (of the whole grid without them)."""
    groups = [group for _, group in frame.groupby(within, sort=False, dropna=False)] if within else [frame]
    return [best for best in (best_row(group, primary, ranked) for group in groups) if best is not None]


def heatmap_table(report: Report, keys: list[str]) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """The primary figure over two settings (by default the two with most values, replicates aside), and the
    settings it holds fixed: the `within` group and every other setting that varies, at the first baseline's
    values (or, where the baseline lacks one of the two, the first such cell's), since a mean over them would mix,
    say, int8 cells into one method's square and not into another's where they are unsupported. A square is the
    mean of its configuration's replicates' medians, blank where none ran; None when there is nothing to show."""
    primary = report.figures[0].name
    frame = report.frame
    done = frame[frame["state"].isin(report.ranked) & frame[primary].notna()]
    baseline = baseline_row(report)
    held = {k: baseline[k] for k in report.within} if baseline is not None else {}
    for key, value in held.items():
        done = rows_at(done, key, value)
    keys = keys or sorted((k for k in report.keys if done[k].nunique() > 1 and k not in report.pool),
                          key=lambda k: -done[k].nunique())[:2]
    if len(keys) != 2 or done.empty:
        return None
    sets_both = done[~unset(done[keys[0]]) & ~unset(done[keys[1]])]
    if sets_both.empty:
        return None
    anchor = baseline if baseline is not None and not unset(baseline[keys]).any() else sets_both.iloc[0]
    for key in report.keys:
        if key not in (*keys, *report.pool, *held) and done[key].nunique(dropna=False) > 1:
            held[key] = anchor[key]
            done = rows_at(done, key, anchor[key])
    done = done.assign(**{k: numeric_or_text(done[k]) for k in keys})  # 64 before 256, not after
    return done.pivot_table(index=keys[0], columns=keys[1], values=primary, aggfunc="mean"), held


def unset(values: Any) -> Any:
    """Whether a setting (or each of a Series of them) is one a cell does not have: NaN (a key of another
    experiment) or `null`, as a cell's name spells a key that its chosen option leaves out."""
    return pd.isna(values) | (values == "null")


def rows_at(frame: pd.DataFrame, key: str, value: Any) -> pd.DataFrame:
    """The rows whose setting `key` is `value`; unset matches unset (NaN or `null`), which `==` never does."""
    return frame[unset(frame[key])] if unset(value) else frame[frame[key] == value]


def baseline_row(report: Report) -> pd.Series | None:
    """The first baseline's row of the report."""
    first = next((b for b in report.baselines.values() if b is not None), None)
    row = report.frame[report.frame["cell"] == first]
    return None if row.empty else row.iloc[0]


def numeric_or_text(values: pd.Series) -> pd.Series:
    """A setting's values as numbers when every one is a number (so they sort as numbers), else as written."""
    numbers = pd.to_numeric(values, errors="coerce")
    return numbers if numbers.notna().all() else values


def parse_compare(text: str) -> tuple[str, str, str]:
    key, _, values = text.partition("=")
    a, _, b = values.partition(":")
    if not key or not a or not b:
        raise InputError(f"--compare {text!r}: write AXIS=A:B, e.g. kv_cache=static:dynamic")
    return key, a, b


def check_compare(text: str, spec: GridSpec, entries: list[Entry]) -> None:
    """An axis and options this grid has, or one line saying which ones it has."""
    key, a, b = parse_compare(text)
    keys = setting_keys(entries)
    if key == "experiment" and key not in keys:
        raise InputError(f"--compare {text!r}: this report has one experiment: name both (--report --experiment "
                         f"{a},{b}) for one report of their cells")
    if key not in keys:
        raise InputError(f"--compare {text!r}: {key} is not a setting of this grid: {close_match(key, keys)}"
                         f"choose one of {', '.join(keys)}")
    present = sorted({spec.settings_of(e.cell, [key])[key] for e in entries})
    for value in (a, b):
        if value not in present:
            raise InputError(f"--compare {text!r}: this grid has no {key}={value}: "
                             f"{close_match(value, present)}choose from {', '.join(present)}")


def check_heatmap(keys: list[str], entries: list[Entry]) -> None:
    grid_keys = setting_keys(entries)
    if len(keys) != 2:
        raise InputError(f"--heatmap {','.join(keys)}: name two settings, e.g. --heatmap attention,kv_cache")
    for key in keys:
        if key not in grid_keys:
            raise InputError(f"--heatmap: {key} is not a setting of this grid: {close_match(key, grid_keys)}"
                             f"choose two of {', '.join(grid_keys)}")


def compare(frame: pd.DataFrame, keys: list[str], figures: list[Figure], text: str,
            ranked: set[str]) -> pd.DataFrame:
    """Pairs of finished cells equal in every setting but `key` (A vs B), with each figure's ratio A/B."""
    key, a, b = parse_compare(text)
    done = frame[frame["state"].isin(ranked)]
    others = [k for k in keys if k != key]  # never empty: the axes are always settings
    left = done[done[key] == a].set_index(others)
    right = done[done[key] == b].set_index(others)
    pairs = left.join(right, how="inner", suffixes=("_a", "_b"))
    result = pd.DataFrame(index=pairs.index)
    primary = figures[0].name
    result[f"{primary} {a}"] = pairs[f"{primary}_a"]
    result[f"{primary} {b}"] = pairs[f"{primary}_b"]
    for figure in figures:
        result[f"{figure.name} {a}/{b}"] = pairs[f"{figure.name}_a"] / pairs[f"{figure.name}_b"]
    flat = result.reset_index()
    shown = [k for k in others if flat[k].nunique() > 1] or others[:1]
    return flat[shown + list(result.columns)]


def median_changes(pairs: pd.DataFrame) -> str:
    """The median over matched pairs of every A/B ratio of a comparison."""
    return ", ".join(f"{c} {pairs[c].median():.3g}" for c in pairs.columns if "/" in str(c))


def resolve_baselines(spec: GridSpec, entries: list[Entry]) -> tuple[dict[str, str | None], list[str]]:
    """Each cell's baseline and, where the grid lacks the declared one, notes naming the cells used instead:
    one baseline for the grid, or one per value of the `grid.report.within` settings (compared only among
    themselves).

    The declared baseline (`grid.baseline`, a full or partial name) means that cell with every other setting
    at the experiment's default, whatever else the command line sweeps; a group's `within` values replace the
    declared or default ones.
    """
    if not entries:
        return {}, []
    keys = setting_keys(entries)
    settings = [(e, spec.settings_of(e.cell, keys)) for e in entries]
    declared = spec.settings.baseline
    wanted = dict(part.partition("=")[::2] for part in str(declared).split(",")) if declared else {}
    defaults = spec.settings_of(spec.cell([]), keys)
    swept = {k for k in keys if len({s[k] for _, s in settings}) > 1}
    within = [k for k in spec.settings.report.within if k in keys]
    groups: dict[tuple[str, ...], list[tuple[Entry, dict[str, str]]]] = {}
    for e, s in settings:
        groups.setdefault(tuple(s[k] for k in within), []).append((e, s))
    baselines: dict[str, str | None] = {}
    notes: list[str] = []
    for values, members in groups.items():
        group_wanted = {**wanted, **dict(zip(within, values))}
        # declared settings as declared; swept ones at the experiment's default; the rest as every cell has them
        ideal = {k: group_wanted[k] if k in group_wanted else defaults[k] if k in swept else members[0][1][k]
                 for k in keys}
        baseline, note = group_baseline(members, ideal, group_wanted, [k for k in keys if k in group_wanted
                                                                       or k in swept])
        baselines.update({e.cell.name: baseline for e, _ in members})
        notes += [note] if note else []
    return baselines, notes


def group_baseline(members: list[tuple[Entry, dict[str, str]]], ideal: dict[str, str], wanted: dict[str, str],
                   described_keys: list[str]) -> tuple[str, str | None]:
    """The member whose settings are `ideal`; else the first that has the `wanted` ones (or the first), with a
    note naming both."""
    exact = [e for e, s in members if s == ideal]
    if exact:
        return exact[0].cell.name, None
    used, used_settings = next(((e, s) for e, s in members if all(s.get(k) == v for k, v in wanted.items())),
                               members[0])

    def described(values: dict[str, str]) -> str:
        return ",".join(f"{k}={values[k]}" for k in described_keys)

    return used.cell.name, (f"the baseline `{described(ideal)}` is not in this grid: speed-ups are over "
                            f"`{described(used_settings)}` instead")


@dataclass
class Report:
    frame: pd.DataFrame
    keys: list[str]
    labels: pd.Series
    #: Each cell's baseline (one for the whole grid unless `grid.report.within` groups the cells).
    baselines: dict[str, str | None]
    baseline_notes: list[str]
    #: The best cell of the grid, or of each `within` group.
    best: list[pd.Series]
    #: The settings whose values compare only among themselves (`grid.report.within`, those of this grid).
    within: list[str]
    comparisons: dict[str, pd.DataFrame]
    pending: dict[str, int]
    figures: list[Figure]
    ranked: set[str]
    #: How many comparisons with a baseline the p-values were adjusted for (Holm).
    tests: int = 0
    #: The settings whose cells are replicates of one configuration, pooled by the tests (`grid.report.pool`).
    pool: list[str] = field(default_factory=list)
    #: The summaries' context lines (`grid.report.context`) and figure definitions (`grid.report.definitions`).
    context: Tally = field(default_factory=dict)
    definitions: Tally = field(default_factory=dict)


def nothing_to_report(spec: GridSpec, entries: list[Entry]) -> str:
    """Why a report has no figure: no finished cell (all stale, or none run yet), or summaries without a number."""
    shown = finished_states(spec.settings)
    if any(e.state.state in shown for e in entries):
        return ("no figure to report: the finished cells' summaries hold no number; name the figures in "
                "grid.report.figures (dotted paths into summary.json)")
    if any(e.state.state == STALE for e in entries):
        return f"nothing to report: {census(entries)}; {STALE_LEFT_OUT}"
    return f"nothing to report yet: {census(entries)}: run the grid first (the same command without --report)"


def build(spec: GridSpec, entries: list[Entry], compares: list[str]) -> Report:
    summaries = finished_summaries(spec, entries)
    figures = figures_of(spec.settings, summaries)
    if not figures:
        raise InputError(nothing_to_report(spec, entries))
    ranked = ranked_states(spec.settings)
    keys = setting_keys(entries)
    # a figure named like a setting (a study returning the count it was given) heads a column of its own
    figures = [replace(f, name=f"{f.name} (result)") if f.name in keys else f for f in figures]
    frame, values = report_frame(spec, entries, figures)
    baselines, notes = resolve_baselines(spec, entries)
    within = [k for k in spec.settings.report.within if k in keys]
    pool = [k for k in spec.settings.report.pool if k in keys]
    configurations = {e.cell.name: tuple(v for k, v in spec.settings_of(e.cell, keys).items() if k not in pool)
                      for e in entries} if pool else None
    frame, tests = with_speedup(frame, values, figures[0], baselines, ranked, configurations)
    shown = finished_states(spec.settings)
    pending: dict[str, int] = {}
    for e in entries:
        if e.state.state not in shown:
            pending[e.state.state] = pending.get(e.state.state, 0) + 1
    return Report(frame, keys, label(frame), baselines, notes, best_rows(frame, figures[0], ranked, within),
                  within,
                  {text: compare(frame, keys, figures, text, ranked) for text in compares}, pending, figures,
                  ranked, tests, pool, tally(summaries, spec.settings.report.get("context")),
                  tally(summaries, spec.settings.report.get("definitions")))
