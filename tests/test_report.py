"""From a finished grid to an answer: report.csv/.md, plots, comparisons, the artifacts map, named studies."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml

from conftest import DONE_GRID, FAST, ROOT, DoneGrid, Light, Tool

#: A cell timed once: its summary warns that one repeat cannot be judged.
ONE_REPEAT_WARNING = "one timed repeat: no spread, and no test against another cell can call a difference real"

EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def declared_cells(name: str) -> int:
    """The product of the sweep's lists, less the copies of cells whose option lacks a swept key of its group
    (spec_decoding: standard decoding has no draft, so each replicate's 2 x 3 x 6 cells are 6, beside 36 assisted
    ones)."""
    params = yaml.safe_load((ROOT / "conf" / "experiment" / f"{name}.yaml").read_text())["hydra"]["sweeper"]["params"]
    replicates = len(str(params.get("replicate", 0)).split(","))
    return {"spec_decoding": (6 + 36) * replicates}.get(
        name, math.prod(len(str(v).split(",")) for v in params.values()))


@pytest.mark.slow
def test_report_of_a_finished_grid(tool: Tool, done_grid: DoneGrid) -> None:
    """The shared done grid's real cells (a copy), four of them reported; their warnings where they are read."""
    grid = [*FAST, "attention=eager,sdpa"]
    done_grid.copy_to(tool)
    assert f"  warning: {ONE_REPEAT_WARNING}" in done_grid.output  # on the console as each cell ends
    assert ", tokens_per_s " in done_grid.output  # the headline figure
    rewrite_tokens_per_s(tool, grid)  # figures the test controls: which cell is fastest is not measured here
    done = tool.cli_here("--report", *grid, "--compare", "kv_cache=static:dynamic")
    assert "4 cells reported" in done.stdout and "2 matched pairs" in done.stdout
    out = tool.cwd / "artifacts" / "default"
    frame = pd.read_csv(out / "report.csv")
    assert len(frame) == 4 and set(frame["state"]) == {"done"}
    assert {"attention", "kv_cache", "logit_processor", "tokens_per_s", "tokens_per_s_min", "tokens_per_s_max",
            "speedup"} <= set(frame.columns)
    assert (frame["tokens_per_s"] > 0).all()
    text = (out / "report.md").read_text()
    assert "**Best cell:** `attention=eager,kv_cache=static`" in text and "2.01x the baseline" in text
    assert "2.01x (1 repeat)" in text
    assert "## kv_cache=static:dynamic" in text and "Median change over pairs" in text
    assert (out / "throughput.png").stat().st_size > 1000 and (out / "heatmap.png").stat().st_size > 1000
    copies = list(out.glob("*/summary.json"))
    assert len(copies) == 4 and all(json.loads(c.read_text())["status"] == "ok" for c in copies)
    assert ONE_REPEAT_WARNING in frame.loc[0, "warnings"]
    warnings = text.split("## Warnings", 1)[1]
    assert f"- {ONE_REPEAT_WARNING}: `" in warnings
    index = (tool.cwd / "artifacts" / "README.md").read_text()
    for name in EXPERIMENTS:
        assert f"| {name} |" in index
    assert "[report](default/report.md)" in index
    # Two figures whose paths end alike (lp_quality's RMSD of the model and of ETKDG) head two columns.
    same_end = "grid.report.figures=[metrics.tokens_per_s,quality.rmsd.median_min_rmsd_A," \
               "quality.reference_point.median_min_rmsd_A]"
    tool.cli_here("--report", *grid, same_end)
    frame = pd.read_csv(out / "report.csv")
    assert {"rmsd.median_min_rmsd_A", "reference_point.median_min_rmsd_A"} <= set(frame.columns)
    header = next(line for line in (out / "report.md").read_text().splitlines() if line.startswith("| cell"))
    assert "rmsd.median_min_rmsd_A" in header and "reference_point.median_min_rmsd_A" in header



@pytest.mark.slow
def test_a_benchmark_report_says_what_its_ranking_clock_covers_and_where_its_figures_come_from(
        tool: Tool, done_grid: DoneGrid) -> None:
    """Real cells of this CPU ranked by the whole pass (as cpu_side is): report.md names the figure and what its
    clock covers, from the cells' definitions, and a Context section from their context, the CPU's caution among
    it; a summary that says another dtype changes its line."""
    from molgen_grid.bench.context import CPU_CAUTION
    from molgen_grid.bench.passes import DEFINITIONS

    grid = [*FAST, "attention=eager,sdpa", "grid.report.figures=[metrics.molecules_per_s,metrics.tokens_per_s]"]
    done_grid.copy_to(tool)
    tool.cli_here("--report", *grid)
    report = tool.cwd / "artifacts" / "default" / "report.md"

    def context() -> list[str]:
        return report.read_text().split("## Context\n\n", 1)[1].split("\n\n", 1)[0].splitlines()

    text = report.read_text()
    assert f"Ranked by `molecules_per_s` (`metrics.molecules_per_s`): {DEFINITIONS['molecules_per_s']}." in text
    lines = context()
    assert {"- device: cpu", f"- caution: {CPU_CAUTION}", "- dtype: float32", "- draft: none"} <= set(lines), lines
    assert any(line.startswith("- model: embedded (llama), ") and line.endswith("M parameters") for line in lines)
    path = next((tool.results / "default").glob("*attention=sdpa,kv_cache=dynamic*/summary.json"))
    summary = json.loads(path.read_text())
    summary["context"]["dtype"] = "bfloat16"
    path.write_text(json.dumps(summary))
    tool.cli_here("--report", *grid)
    dtype = next(line for line in context() if line.startswith("- dtype: "))
    assert "float32 (3 cells)" in dtype and "bfloat16 (1 cell)" in dtype, dtype


def test_report_of_an_empty_grid_and_a_bad_comparison(tool: Tool) -> None:
    done = tool.cli_here("--report", *FAST)
    assert "0 cells reported (2 missing not yet)" in done.stdout
    assert (tool.cwd / "artifacts" / "default" / "report.md").exists()
    bad = tool.cli_here("--report", *FAST, "--compare", "kv_cache", check=False)
    assert bad.returncode == 2 and "write AXIS=A:B" in bad.stderr


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_each_named_experiment_shows_its_declared_grid(tool: Tool, name: str) -> None:
    cells = declared_cells(name)
    plan = tool.cli_here("--experiment", name, "--dry-run")
    assert f"experiment {name}: {cells} of {cells} cells would run" in plan.stdout


#: Timed repeats written into the finished grid's summaries, so the report's arithmetic can be checked exactly.
REPEATS = {("sdpa", "dynamic"): [98.0, 99.0, 100.0, 101.0, 102.0],     # the baseline
           ("sdpa", "static"): [148.0, 149.0, 150.0, 151.0, 152.0],    # 1.5x, every repeat above the baseline's
           ("eager", "dynamic"): [97.0, 99.5, 100.8, 101.5, 103.0],    # 1.008x, within the noise
           ("eager", "static"): [201.0]}                               # 2.01x from one repeat


def rewrite_tokens_per_s(tool: Tool, grid: list[str]) -> dict[tuple[str, str], str]:
    """Give each done cell its REPEATS in summary.json; the cells by (attention, kv_cache)."""
    cells = {}
    for cell in tool.status(*grid)["cells"]:
        settings = dict(o.split("=", 1) for o in cell["overrides"])
        key = (settings["attention"], settings["kv_cache"])
        cells[key] = cell["cell"]
        if key in REPEATS:
            path = tool.results / "default" / cell["cell"] / "summary.json"
            summary = json.loads(path.read_text())
            values = REPEATS[key]
            summary["metrics"]["tokens_per_s"] = {"median": float(pd.Series(values).median()), "min": min(values),
                                                  "max": max(values), "values": values}
            path.write_text(json.dumps(summary))
    return cells


@pytest.mark.slow
def test_report_numbers_from_known_repeats(tool: Tool, done_grid: DoneGrid) -> None:
    """Speed-ups, intervals, rank tests, the best cell, pairs and the heatmap, from repeats whose answers are
    known; FlashAttention-2 on the CPU ends unsupported by itself and is listed with its reason, never ranked.
    The cells are a copy of the shared done grid (real summaries, their timings replaced)."""
    grid = DONE_GRID
    done_grid.copy_to(tool)
    cells = rewrite_tokens_per_s(tool, grid)
    done = tool.cli_here("--report", *grid, "--compare", "kv_cache=static:dynamic", "--heatmap", "attention,kv_cache")
    assert "6 cells reported" in done.stdout and "2 matched pairs" in done.stdout
    assert "median change: tokens_per_s static/dynamic 1.75" in done.stdout
    out = tool.cwd / "artifacts" / "default"
    frame = pd.read_csv(out / "report.csv").set_index("cell")
    row = {key: frame.loc[cell] for key, cell in cells.items()}

    assert row[("sdpa", "dynamic")]["speedup"] == 1.0
    fast = row[("sdpa", "static")]
    assert fast["speedup"] == pytest.approx(1.5)
    assert fast["p_value"] == pytest.approx(2 / 252) and not fast["within_noise"]
    assert 148 / 102 <= fast["speedup_low"] <= 1.5 <= fast["speedup_high"] <= 152 / 98
    assert (fast["tokens_per_s"], fast["tokens_per_s_min"], fast["tokens_per_s_max"]) == (150, 148, 152)
    same = row[("eager", "dynamic")]
    assert same["speedup"] == pytest.approx(1.008) and same["within_noise"] and same["p_value"] > 0.05
    single = row[("eager", "static")]
    assert single["speedup"] == pytest.approx(2.01) and pd.isna(single["p_value"]) and single["timed_repeats"] == 1
    for kv in ("dynamic", "static"):
        flash = row[("flash_attention_2", kv)]
        assert flash["state"] == "unsupported" and "float16 or bfloat16" in flash["reason"]
        assert pd.isna(flash["speedup"])

    text = (out / "report.md").read_text()
    best = next(line for line in text.splitlines() if line.startswith("**Best cell:**"))
    assert "eager" in best and "static" in best and "2.01x the baseline (one timed repeat" in best
    assert "1.50x [" in text and "1.01x [" in text and "] ~" in text and "2.01x (1 repeat)" in text
    assert text.count("float16 or bfloat16 only") == 2
    pairs = text.split("## kv_cache=static:dynamic", 1)[1]
    assert "1.5 " in pairs and "1.994" in pairs and "Median change over pairs: tokens_per_s static/dynamic 1.75" \
        in pairs

    heatmap = pd.read_csv(out / "heatmap.csv", index_col=0)
    assert heatmap.loc["sdpa", "static"] == 150 and heatmap.loc["eager", "static"] == 201
    assert heatmap.loc["eager", "dynamic"] == pytest.approx(100.8) and heatmap.loc["sdpa", "dynamic"] == 100
    assert "flash_attention_2" not in heatmap.index


def test_a_heatmap_holds_the_settings_it_does_not_show_at_the_baselines(light: Light) -> None:
    """A third setting that varies (spread) is held at the baseline's value, not averaged into the squares: a
    mean over it would mix configurations into one square and not another where some did not run. A light cell's
    value is factor x scale x (1 + spread), so each square says which cells it holds."""
    grid = ["variant=a,b", "scale=1.0,2.0", "spread=1.0,2.0"]
    light.cli(*grid)
    light.cli_here("--report", *grid, "--heatmap", "variant,scale")
    heatmap = pd.read_csv(light.cwd / "artifacts" / "default" / "heatmap.csv", index_col=0)
    assert heatmap.to_dict() == {"1.0": {"a": 2.0, "b": 4.0}, "2.0": {"a": 4.0, "b": 8.0}}  # spread 1.0 alone


def test_a_heatmap_of_keys_the_baseline_leaves_unset_shows_the_cells_that_set_them(light: Light) -> None:
    """spec_decoding's shape: the baseline's option has no draft length or schedule (its name spells them `null`),
    so the two shown keys are held where a cell sets both (variant=deep), not at the baseline's option, whose one
    square would say nothing."""
    (light.cwd / "variant" / "deep.yaml").write_text("factor: 2\ndepth: 1\nwidth: 1\n")
    grid = ["variant=a,deep", "variant.depth=1,2", "variant.width=1,2"]
    light.cli(*grid)
    light.cli_here("--report", *grid)
    heatmap = pd.read_csv(light.cwd / "artifacts" / "default" / "heatmap.csv", index_col=0)
    assert heatmap.shape == (2, 2) and heatmap.notna().all().all(), heatmap


@pytest.mark.slow
def test_report_within_a_setting_compares_like_with_like(tool: Tool, done_grid: DoneGrid) -> None:
    """`grid.report.within=[kv_cache]`: each cache has its own baseline (the declared one, sdpa, at that cache)
    and its own best cell; no static cell is measured against a dynamic one."""
    grid = DONE_GRID
    done_grid.copy_to(tool)
    cells = rewrite_tokens_per_s(tool, grid)
    done = tool.cli_here("--report", *grid, "grid.report.within=[kv_cache]", "--heatmap", "attention,kv_cache")
    assert done.stdout.count("best cell: ") == 2
    out = tool.cwd / "artifacts" / "default"
    frame = pd.read_csv(out / "report.csv").set_index("cell")
    row = {key: frame.loc[cell] for key, cell in cells.items()}
    assert row[("sdpa", "dynamic")]["speedup"] == 1.0 and row[("sdpa", "static")]["speedup"] == 1.0
    assert row[("eager", "dynamic")]["speedup"] == pytest.approx(1.008)
    assert row[("eager", "static")]["speedup"] == pytest.approx(201 / 150)  # over sdpa static, not sdpa dynamic
    text = (out / "report.md").read_text()
    assert "Baselines (cells compare only with cells of equal kv_cache): " in text
    bests = [line for line in text.splitlines() if line.startswith("**Best cell")]
    assert len(bests) == 2
    assert bests[0].startswith("**Best cell (kv_cache=dynamic):**") and "eager" in bests[0]
    assert bests[1].startswith("**Best cell (kv_cache=static):**") and "1.34x the baseline" in bests[1]
    # the heatmap shows one group (the first baseline's): its means never mix caches
    heatmap = pd.read_csv(out / "heatmap.csv", index_col=0)
    assert list(heatmap.columns) == ["dynamic"]
    assert heatmap.loc["eager", "dynamic"] == pytest.approx(100.8) and heatmap.loc["sdpa", "dynamic"] == 100
