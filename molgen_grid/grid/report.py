"""From a finished grid to an answer: a pandas table of its cells, speed-ups over the experiment's baseline
with the noise marked, comparisons along one axis, plots, and git-tracked copies under artifacts/.

The engine knows no molecules: the figures it reports are dotted paths into summary.json named in the config
(`grid.report.figures`), the first of which ranks the cells (higher is better).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from molgen_grid.errors import InputError
from molgen_grid.grid.plan import Entry, make_plan, setting_keys
from molgen_grid.grid.spec import GridSpec
from molgen_grid.grid.state import COMPLETE, DONE
from molgen_grid.grid import statistics
from molgen_grid.grid.status import short_labels

MEDIAN, LOW, HIGH = "", "_min", "_max"


@dataclass
class Figure:
    """One headline figure: a dotted path into summary.json, as a spread ({median, min, max, values}) or a
    number; `lower_is_better` for times and memory (a speed-up is then baseline / cell)."""

    path: str
    lower_is_better: bool = False

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    def node(self, summary: dict) -> Any:
        node: Any = summary
        for part in self.path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

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


def figures_of(settings: Any) -> list[Figure]:
    """The report's figures (`grid.report.figures`, the first ranks the cells) with their direction."""
    lower = set(settings.report.get("lower_is_better") or [])
    return [Figure(p, p in lower) for p in settings.report.figures]


def varying(frame: pd.DataFrame, keys: list[str]) -> list[str]:
    return [k for k in keys if frame[k].nunique() > 1]


def report_frame(spec: GridSpec, entries: list[Entry], figures: list[Figure]
                 ) -> tuple[pd.DataFrame, dict[str, list[float | None]]]:
    """One row per done or unsupported cell (its name, state, reason, every setting, every figure), and the
    primary figure's repeat values by cell (for the statistics)."""
    keys = setting_keys(entries)
    rows, values = [], {}
    for e in entries:
        if e.state.state not in COMPLETE:
            continue
        summary = e.store.summary() or {}
        row: dict[str, Any] = {"cell": e.cell.name, "state": e.state.state, "reason": e.state.reason,
                               **spec.settings_of(e.cell, keys)}
        for figure in figures:
            median, low, high = figure.read(summary)
            row.update({figure.name + MEDIAN: median, figure.name + LOW: low, figure.name + HIGH: high})
        values[e.cell.name] = figures[0].values(summary)
        row["timed_repeats"] = len(values[e.cell.name])
        rows.append(row)
    columns = ["cell", "state", "reason", *keys] + [f.name + s for f in figures for s in (MEDIAN, LOW, HIGH)] \
        + ["timed_repeats"]
    return pd.DataFrame(rows, columns=columns), values


def label(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Each reported cell by the settings that vary among the reported cells."""
    labels = short_labels(frame[keys].to_dict("records"), keys, list(frame["cell"]))
    return pd.Series(labels, index=frame.index, dtype=object)


def median_changes(pairs: pd.DataFrame) -> str:
    """The median over matched pairs of every A/B ratio of a comparison."""
    return ", ".join(f"{c} {pairs[c].median():.3g}" for c in pairs.columns if "/" in str(c))


SPEEDUP_COLUMNS = ("speedup", "speedup_low", "speedup_high", "p_value", "within_noise")


def with_speedup(frame: pd.DataFrame, values: dict[str, list[float | None]], primary: Figure,
                 baseline: str) -> pd.DataFrame:
    """Each cell's speed-up in the primary figure over the baseline, with its 95% interval, the rank test's
    p-value over the repeats, and whether the difference is within the noise (see statistics.py)."""
    out = frame.copy()
    results = [statistics.compare(values.get(cell), values.get(baseline), primary.lower_is_better)
               for cell in out["cell"]]
    for column in SPEEDUP_COLUMNS:
        attribute = "speedup" if column == "speedup" else column.removeprefix("speedup_")
        out[column] = pd.Series([None if r is None else getattr(r, attribute) for r in results],
                                index=out.index, dtype=object)
    return out


def speedup_text(row: pd.Series) -> str:
    """`1.23x [1.10, 1.35]`, `~` when within the noise, `(1 repeat)` when no test could judge it."""
    value = row.get("speedup")
    if value is None or pd.isna(value):
        return ""
    low, high = row.get("speedup_low"), row.get("speedup_high")
    text = f"{value:.2f}x"
    if low is not None and not pd.isna(low):
        text += f" [{low:.2f}, {high:.2f}]"
    if row.get("p_value") is None or pd.isna(row.get("p_value")):
        return text + " (1 repeat)"
    return text + (" ~" if _true(row.get("within_noise")) else "")


def _true(flag: Any) -> bool:
    return flag is not None and not pd.isna(flag) and bool(flag)


def parse_compare(text: str) -> tuple[str, str, str]:
    key, _, values = text.partition("=")
    a, _, b = values.partition(":")
    if not key or not a or not b:
        raise InputError(f"--compare {text!r}: write AXIS=A:B, e.g. kv_cache=static:dynamic")
    return key, a, b


def compare(frame: pd.DataFrame, keys: list[str], figures: list[Figure], text: str) -> pd.DataFrame:
    """Pairs of done cells equal in every setting but `key` (A vs B), with each figure's ratio A/B."""
    key, a, b = parse_compare(text)
    if key not in frame.columns:
        raise InputError(f"--compare {text!r}: {key} is not a setting of this grid ({', '.join(keys)})")
    done = frame[frame["state"] == DONE]
    others = [k for k in keys if k != key]  # never empty: the axes are always settings
    left = done[done[key] == a].set_index(others)
    right = done[done[key] == b].set_index(others)
    pairs = left.join(right, how="inner", lsuffix="_a", rsuffix="_b")
    result = pd.DataFrame(index=pairs.index)
    primary = figures[0].name
    result[f"{primary} {a}"] = pairs[f"{primary}_a"]
    result[f"{primary} {b}"] = pairs[f"{primary}_b"]
    for figure in figures:
        result[f"{figure.name} {a}/{b}"] = pairs[f"{figure.name}_a"] / pairs[f"{figure.name}_b"]
    return result.reset_index()[varying_or_axis(result.reset_index(), others) + list(result.columns)]


def varying_or_axis(frame: pd.DataFrame, keys: list[str]) -> list[str]:
    """The settings that tell the pairs apart (all of them when there is a single pair)."""
    shown = [k for k in keys if frame[k].nunique() > 1]
    return shown or keys[:1]


@dataclass
class Report:
    frame: pd.DataFrame
    keys: list[str]
    labels: pd.Series
    baseline: str
    best: pd.Series | None
    comparisons: dict[str, pd.DataFrame]
    pending: dict[str, int]


def build(spec: GridSpec, entries: list[Entry], compares: list[str]) -> Report:
    figures = figures_of(spec.settings)
    frame, values = report_frame(spec, entries, figures)
    keys = setting_keys(entries)
    cells = [e.cell for e in entries]
    baseline = spec.resolve_names([spec.settings.baseline], cells)[0].name if spec.settings.baseline else \
        cells[0].name
    frame = with_speedup(frame, values, figures[0], baseline)
    best = best_row(frame, figures[0])
    pending: dict[str, int] = {}
    for e in entries:
        if e.state.state not in COMPLETE:
            pending[e.state.state] = pending.get(e.state.state, 0) + 1
    return Report(frame, keys, label(frame, keys), baseline, best,
                  {text: compare(frame, keys, figures, text) for text in compares}, pending)


def best_row(frame: pd.DataFrame, primary: Figure) -> pd.Series | None:
    """The done cell with the best primary figure."""
    done = frame[frame["state"] == DONE].dropna(subset=[primary.name])
    if done.empty:
        return None
    ranked = done[primary.name].astype(float)
    return done.loc[ranked.idxmin() if primary.lower_is_better else ranked.idxmax()]


def markdown(spec: GridSpec, report: Report, plots: list[str]) -> str:
    figures = figures_of(spec.settings)
    primary = figures[0].name
    frame, labels = report.frame, report.labels
    lines = [f"# {spec.experiment}", "", spec.settings.description or "", ""]
    lines.append(f"{len(frame)} cells reported ({(frame['state'] == DONE).sum()} done, "
                 f"{(frame['state'] != DONE).sum()} unsupported)"
                 + (f"; not in the report: " + ", ".join(f"{n} {s}" for s, n in report.pending.items())
                    if report.pending else "") + ".")
    base_label = labels[frame["cell"] == report.baseline]
    lines.append(f"Baseline: `{base_label.iloc[0] if len(base_label) else report.baseline}`.")
    if report.best is not None:
        best = report.best
        if best["cell"] == report.baseline:
            speed, noise = " (the baseline itself)", ""
        else:
            speed, noise = "", ""
            if best.get("speedup") is not None and pd.notna(best.get("speedup")):
                speed = f", {best['speedup']:.2f}x the baseline"
                if best.get("p_value") is None or pd.isna(best.get("p_value")):
                    noise = " (one timed repeat: no test can judge it)"
                elif _true(best.get("within_noise")):
                    noise = f" (within the noise of the baseline: p = {best['p_value']:.2g})"
                else:
                    noise = f" (95% interval {best['speedup_low']:.2f} to {best['speedup_high']:.2f}, " \
                            f"p = {best['p_value']:.2g})"
        lines += ["", f"**Best cell:** `{labels[best.name]}`: {primary} {best[primary]:.4g} "
                      f"(range {best[primary + LOW]:.4g} to {best[primary + HIGH]:.4g}){speed}{noise}."]
    table = pd.DataFrame({"cell": labels, "state": frame["state"]})
    for figure in figures:
        f = figure.name
        table[f] = [f"{m:.4g} [{lo:.4g}, {hi:.4g}]" if pd.notna(m) and lo != hi else (f"{m:.4g}" if pd.notna(m) else "")
                    for m, lo, hi in zip(frame[f], frame[f + LOW], frame[f + HIGH])]
    table["speed-up"] = [speedup_text(row) for _, row in frame.iterrows()]
    table["reason"] = frame["reason"].fillna("")
    direction = "baseline / cell" if figures[0].lower_is_better else "cell / baseline"
    lines += ["", table.to_markdown(index=False), "",
              f"Figures are medians over the timed repeats, [min, max] in brackets. Speed-up: {primary} as "
              f"{direction} (above 1: better than the baseline), with its 95% bootstrap interval over the repeats; "
              f"`~`: a two-sided Mann-Whitney U test over the repeats finds no difference from the baseline "
              f"(p >= {statistics.ALPHA}), so the speed-up is within the noise; `(1 repeat)`: a figure from one "
              "timed repeat, which no test can judge.", ""]
    for text, pairs in report.comparisons.items():
        lines += [f"## {text}", ""]
        if pairs.empty:
            lines += ["No matched pairs among the done cells.", ""]
            continue
        lines += [pairs.to_markdown(index=False, floatfmt=".4g"), ""]
        lines += [f"Median change over pairs: {median_changes(pairs)}", ""]
    lines += [f"![{Path(p).stem}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def plot(spec: GridSpec, report: Report, out: Path, heatmap: list[str]) -> list[str]:
    """throughput.png (each done cell with its spread) and heatmap.png (two settings); returns file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary = figures_of(spec.settings)[0].name
    frame, labels = report.frame, report.labels
    done = frame[(frame["state"] == DONE) & frame[primary].notna()]
    made: list[str] = []
    if done.empty:
        return made
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(done) + 1.5))
    errors = [done[primary] - done[primary + LOW], done[primary + HIGH] - done[primary]]
    colors = ["tab:orange" if c == report.baseline else "tab:blue" for c in done["cell"]]
    ax.barh(labels[done.index], done[primary], xerr=errors, color=colors, capsize=3)
    ax.set_xlabel(f"{primary} (median, bars: min-max over repeats; orange: baseline)")
    ax.set_title(spec.experiment)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=100)
    plt.close(fig)
    made.append("throughput.png")
    keys = heatmap or sorted(varying(done, report.keys), key=lambda k: -done[k].nunique())[:2]
    if len(keys) == 2 and all(k in done for k in keys):
        pivot = done.pivot_table(index=keys[0], columns=keys[1], values=primary, aggfunc="mean")
        fig, ax = plt.subplots(figsize=(1.6 * len(pivot.columns) + 2.5, 0.7 * len(pivot.index) + 1.8))
        image = ax.imshow(pivot.values, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(pivot.columns)), pivot.columns, rotation=30, ha="right")
        ax.set_yticks(range(len(pivot.index)), pivot.index)
        ax.set_xlabel(keys[1])
        ax.set_ylabel(keys[0])
        for (i, j), value in pd.DataFrame(pivot.values).stack().items():
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", color="white")
        fig.colorbar(image, ax=ax, label=f"{primary} (mean of medians)")
        fig.tight_layout()
        fig.savefig(out / "heatmap.png", dpi=100)
        plt.close(fig)
        made.append("heatmap.png")
    return made


def write(spec: GridSpec, entries: list[Entry], report: Report, out: Path, heatmap: list[str]) -> list[Path]:
    """report.csv, report.md, the plots and a copy of every reported cell's summary, under `out`."""
    if out.exists():
        for old in out.iterdir():
            if old.is_dir():
                shutil.rmtree(old)
    out.mkdir(parents=True, exist_ok=True)
    report.frame.to_csv(out / "report.csv", index=False)
    plots = plot(spec, report, out, heatmap)
    (out / "report.md").write_text(markdown(spec, report, plots))
    reported = set(report.frame["cell"])
    for e in entries:
        if e.cell.name in reported:
            (out / e.cell.name).mkdir()
            shutil.copyfile(e.store.path("summary.json"), out / e.cell.name / "summary.json")
    return [out / "report.csv", out / "report.md", *(out / p for p in plots)]


def grid_cells(spec: GridSpec) -> list:
    """The cells an experiment declares (`hydra.sweeper.params`), expanded as Hydra's sweeper expands them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(spec.base, "hydra.sweeper.params") or {}
    parser = OverridesParser.create(config_loader=spec.loader)
    overrides = parser.parse_overrides([f"{k}={v}" for k, v in params.items()])
    (cells,) = BasicSweeper.split_arguments(overrides, None)
    return spec.cells(cells)


def experiment_map(loader: Any, config_name: str, artifacts: Path, results: Path) -> str:
    """artifacts/README.md: every experiment of conf/experiment, what it studies, its grid, how many of its
    cells are done, its best cell and its report."""
    lines = ["# Experiments", "", "Generated by `sbatch/run.sh --report`: one line per `conf/experiment/` study.",
             "", "| experiment | studies | grid | done | best cell | report |", "|---|---|---|---|---|---|"]
    for name in loader.get_group_options("experiment"):
        spec = GridSpec(loader, config_name, name)
        cells = grid_cells(spec)
        entries, _ = make_plan(spec, cells, results / name, set())
        complete = sum(1 for e in entries if e.state.state in COMPLETE)
        params = OmegaConf.select(spec.base, "hydra.sweeper.params") or {}
        grid = " x ".join(f"{k} ({v})" for k, v in params.items()) or "one cell"
        best, link = "", ""
        csv = artifacts / name / "report.csv"
        if csv.exists():
            frame = pd.read_csv(csv)
            primary = figures_of(spec.settings)[0]
            top = best_row(frame, primary)
            if top is not None:
                best = f"{label(frame, spec.axes)[top.name]} ({primary.name} {top[primary.name]:.4g})"
            link = f"[report]({name}/report.md)"
        lines.append(f"| {name} | {spec.settings.description} | {grid}: {len(cells)} cells | {complete} of "
                     f"{len(cells)} | {best} | {link} |")
    return "\n".join(lines) + "\n"
