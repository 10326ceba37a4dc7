"""report.md: what a person reads first, the best cell and every cell's figures against the baseline."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from molgen_grid.grid import statistics
from molgen_grid.grid.report.context import context_section, ranking_line
from molgen_grid.grid.report.tables import HIGH, LOW, POOLED_HIGH, POOLED_LOW, POOLED_MEDIAN, WARNING_SEPARATOR, \
    Report, best_name, is_true, median_changes, missing, speedup_text
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.state import DONE
from molgen_grid.words import plural


def best_line(report: Report, best: pd.Series) -> str:
    """The best cell, or where replicates are pooled the best configuration with its pooled repeats' figures."""
    primary = report.figures[0].name
    within = [k for k in report.within if k in best]
    group = f" ({', '.join(f'{k}={best[k]}' for k in within)})" if within else ""
    pooled = POOLED_MEDIAN in best
    speed = ""
    if best["cell"] == report.baselines.get(best["cell"]) or is_true(best.get("baseline_configuration")):
        speed = " (the baseline itself)"
    elif not missing(best.get("speedup")):
        speed = f", {best['speedup']:.2f}x the baseline"
        p = "" if missing(best.get("p_value")) else f"p = {best['p_value']:.2g}" + (
            "" if missing(best.get("p_holm")) else f", Holm-adjusted {best['p_holm']:.2g}")
        if not p:
            speed += " (one timed repeat: no test can judge it)"
        elif is_true(best.get("within_noise")):
            speed += f" (within the noise of the baseline: {p})"
        else:
            speed += f" (95% interval {best['speedup_low']:.2f} to {best['speedup_high']:.2f}, {p})"
    if pooled:
        return (f"**Best configuration{group}:** `{best_name(report.labels, best, report.pool)}`: {primary} "
                f"{best[POOLED_MEDIAN]:.4g} (range "
                f"{best[POOLED_LOW]:.4g} to {best[POOLED_HIGH]:.4g} over "
                f"{plural(int(best['pooled_repeats']), 'repeat')} in "
                f"{plural(int(best['pooled_processes']), 'process', 'processes')}){speed}.")
    return (f"**Best cell{group}:** `{report.labels[best.name]}`: {primary} {best[primary]:.4g} "
            f"(range {best[primary + LOW]:.4g} to {best[primary + HIGH]:.4g}){speed}.")


def pooled_note(report: Report) -> str:
    """What the tests pooled, where cells are replicates of one configuration (`grid.report.pool`)."""
    if not report.pool:
        return ""
    counts = sorted({int(n) for n in report.frame["pooled_processes"] if not missing(n)})
    shown = "-".join(str(n) for n in (counts[0], counts[-1]) if counts) if len(counts) > 1 else \
        (str(counts[0]) if counts else "0")
    return (f" Cells equal but for {', '.join(report.pool)} are replicates of one configuration, each in a process "
            f"of its own: the test and the interval pool the repeats of all of a configuration's replicates "
            f"({shown} processes per configuration; report.csv's `pooled_processes`, `pooled_repeats`).")


def figure_text(median: float | None, low: float | None, high: float | None) -> str:
    if missing(median):
        return ""
    return f"{median:.4g}" if low == high else f"{median:.4g} [{low:.4g}, {high:.4g}]"


def warnings_section(frame: pd.DataFrame, labels: pd.Series) -> list[str]:
    """Each warning once, with the cells it concerns: what a reader must know before trusting those figures."""
    cells: dict[str, list[str]] = {}
    for index, text in frame["warnings"].items():
        for warning in filter(None, str(text or "").split(WARNING_SEPARATOR)):
            cells.setdefault(warning, []).append(f"`{labels[index]}`")
    if not cells:
        return []
    return ["## Warnings", ""] + [f"- {warning}: {', '.join(names)}" for warning, names in cells.items()] + [""]


def markdown(spec: GridSpec, report: Report, plots: list[str], limit: int | None) -> str:
    figures = report.figures
    primary = figures[0].name
    frame, labels = report.frame, report.labels
    title = f"# {spec.experiment}" + (f" (test mode: --limit {limit}, {spec.settings.limit_key}={limit})"
                                      if limit else "")
    done = int((frame["state"] == DONE).sum())
    lines = [title, "", spec.settings.description or "", "",
             f"{plural(len(frame), 'cell')} reported ({done} done, {len(frame) - done} other)"
             + ("; not in the report: " + ", ".join(f"{n} {s}" for s, n in report.pending.items())
                if report.pending else "") + "."]
    baselines = list(dict.fromkeys(b for b in report.baselines.values() if b is not None))
    if baselines:
        shown = ", ".join(f"`{labels[frame['cell'] == b].iloc[0] if (frame['cell'] == b).any() else b}`"
                          for b in baselines)
        within = f" (cells compare only with cells of equal {', '.join(report.within)})" if report.within else ""
        note = f" ({'; '.join(report.baseline_notes)})" if report.baseline_notes else ""
        lines.append(f"Baseline{'s' if len(baselines) > 1 else ''}{within}: {shown}{note}.")
    lines += ["", ranking_line(figures[0], report.definitions)]
    lines += [line for best in report.best for line in ("", best_line(report, best))]
    table = pd.DataFrame({"cell": labels, "state": frame["state"]})
    for figure in figures:
        f = figure.name
        table[f] = [figure_text(m, lo, hi) for m, lo, hi in zip(frame[f], frame[f + LOW], frame[f + HIGH])]
    table["speed-up"] = [speedup_text(row) for _, row in frame.iterrows()]
    table["reason"] = frame["reason"].fillna("")
    direction = "baseline / cell" if figures[0].lower_is_better else "cell / baseline"
    lines += ["", table.to_markdown(index=False), "", f"Figures are medians over the timed repeats, [min, max] in "
              f"brackets. Speed-up: {primary} as {direction} (above 1: better than the baseline), with its 95% "
              f"bootstrap interval over the repeats; `~`: a two-sided Mann-Whitney U test over the repeats finds no "
              f"difference from the baseline (its p-value, adjusted by Holm's step-down method for the "
              f"{plural(report.tests, 'comparison')} with a baseline in this report, is >= {statistics.ALPHA}; "
              "report.csv has both, `p_value` and `p_holm`), so the speed-up is within the noise; `(1 repeat)`: a "
              "figure from one timed repeat, which no test can judge." + pooled_note(report), ""]
    lines += context_section(report.context)
    lines += warnings_section(frame, labels)
    for text, pairs in report.comparisons.items():
        lines += [f"## {text}", ""]
        if pairs.empty:
            lines += ["No matched pairs among the done cells.", ""]
            continue
        lines += [pairs.to_markdown(index=False, floatfmt=".4g"), ""]
        lines += [f"Median change over pairs: {median_changes(pairs)}", ""]
    lines += [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"
