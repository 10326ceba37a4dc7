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
from molgen_grid.grid.status import short_labels

MEDIAN, LOW, HIGH = "", "_min", "_max"


@dataclass
class Figure:
    """One headline figure: a dotted path into summary.json, as a spread ({median, min, max}) or a number."""

    path: str

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    def read(self, summary: dict) -> tuple[float | None, float | None, float | None]:
        node: Any = summary
        for part in self.path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            return node.get("median"), node.get("min"), node.get("max")
        return (node, node, node) if isinstance(node, (int, float)) else (None, None, None)


def varying(frame: pd.DataFrame, keys: list[str]) -> list[str]:
    return [k for k in keys if frame[k].nunique() > 1]


def report_frame(spec: GridSpec, entries: list[Entry], figures: list[Figure]) -> pd.DataFrame:
    """One row per done or unsupported cell: its name, state, reason, every setting, every figure."""
    keys = setting_keys(entries)
    rows = []
    for e in entries:
        if e.state.state not in COMPLETE:
            continue
        summary = e.store.summary() or {}
        row: dict[str, Any] = {"cell": e.cell.name, "state": e.state.state, "reason": e.state.reason,
                               **spec.settings_of(e.cell, keys)}
        for figure in figures:
            median, low, high = figure.read(summary)
            row.update({figure.name + MEDIAN: median, figure.name + LOW: low, figure.name + HIGH: high})
        rows.append(row)
    columns = ["cell", "state", "reason", *keys] + [f.name + s for f in figures for s in (MEDIAN, LOW, HIGH)]
    return pd.DataFrame(rows, columns=columns)


def label(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Each reported cell by the settings that vary among the reported cells."""
    labels = short_labels(frame[keys].to_dict("records"), keys, list(frame["cell"]))
    return pd.Series(labels, index=frame.index, dtype=object)


def median_changes(pairs: pd.DataFrame) -> str:
    """The median over matched pairs of every A/B ratio of a comparison."""
    return ", ".join(f"{c} {pairs[c].median():.3g}" for c in pairs.columns if "/" in str(c))


def with_speedup(frame: pd.DataFrame, primary: Figure, baseline: str) -> pd.DataFrame:
    """Speed-up of each cell's primary figure over the baseline's, and whether it is inside the noise (the
    cell's min-max range overlaps the baseline's)."""
    base = frame[frame["cell"] == baseline]
    out = frame.copy()
    if base.empty or pd.isna(base.iloc[0][primary.name]):
        out["speedup"], out["within_noise"] = None, None
        return out
    b = base.iloc[0]
    name = primary.name
    overlap = (out[name + LOW] <= b[name + HIGH]) & (out[name + HIGH] >= b[name + LOW])
    out["speedup"] = out[name] / b[name]
    out["within_noise"] = overlap.astype(object).where(out[name].notna(), None)
    return out


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
    figures = [Figure(p) for p in spec.settings.report.figures]
    frame = report_frame(spec, entries, figures)
    keys = setting_keys(entries)
    cells = [e.cell for e in entries]
    baseline = spec.resolve_names([spec.settings.baseline], cells)[0].name if spec.settings.baseline else \
        cells[0].name
    frame = with_speedup(frame, figures[0], baseline)
    done = frame[frame["state"] == DONE].dropna(subset=[figures[0].name])
    best = done.loc[done[figures[0].name].idxmax()] if len(done) else None
    pending: dict[str, int] = {}
    for e in entries:
        if e.state.state not in COMPLETE:
            pending[e.state.state] = pending.get(e.state.state, 0) + 1
    return Report(frame, keys, label(frame, keys), baseline, best,
                  {text: compare(frame, keys, figures, text) for text in compares}, pending)


def markdown(spec: GridSpec, report: Report, plots: list[str]) -> str:
    figures = [Figure(p) for p in spec.settings.report.figures]
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
            speed = f", {best['speedup']:.2f}x the baseline" if pd.notna(best.get("speedup")) else ""
            noise = " (within the noise of the baseline)" if _true(best.get("within_noise")) else ""
        lines += ["", f"**Best cell:** `{labels[best.name]}`: {primary} {best[primary]:.4g} "
                      f"(range {best[primary + LOW]:.4g} to {best[primary + HIGH]:.4g}){speed}{noise}."]
    table = pd.DataFrame({"cell": labels, "state": frame["state"]})
    for figure in figures:
        f = figure.name
        table[f] = [f"{m:.4g} [{lo:.4g}, {hi:.4g}]" if pd.notna(m) and lo != hi else (f"{m:.4g}" if pd.notna(m) else "")
                    for m, lo, hi in zip(frame[f], frame[f + LOW], frame[f + HIGH])]
    table["speed-up"] = [("" if pd.isna(s) else f"{s:.2f}x" + (" ~" if _true(n) else ""))
                         for s, n in zip(frame.get("speedup", []), frame.get("within_noise", []))]
    table["reason"] = frame["reason"].fillna("")
    lines += ["", table.to_markdown(index=False), "",
              f"Figures are medians over the timed repeats, [min, max] in brackets. `~`: the cell's range overlaps "
              f"the baseline's, so its speed-up is inside the noise.", ""]
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

    primary = Figure(spec.settings.report.figures[0]).name
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
            primary = Figure(spec.settings.report.figures[0]).name
            ranked = frame[frame["state"] == DONE].dropna(subset=[primary])
            if len(ranked):
                top = ranked.loc[ranked[primary].idxmax()]
                best = f"{label(frame, spec.axes)[top.name]} ({primary} {top[primary]:.4g})"
            link = f"[report]({name}/report.md)"
        lines.append(f"| {name} | {spec.settings.description} | {grid}: {len(cells)} cells | {complete} of "
                     f"{len(cells)} | {best} | {link} |")
    return "\n".join(lines) + "\n"
