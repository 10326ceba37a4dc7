"""Reports of any study: one report of several experiments (the pinned-code workflow of docs/tasks.md ends with
it), a warning on a figure whose repeats spread too wide, a log axis where the figures span more than 10x; an
app's status with each done job's stored value."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from molgen_grid.grid.figures import Figure
from molgen_grid.grid.report.plots import throughput_axes
from molgen_grid.grid.report.tables import Report
from tests.conftest import Light, attempts
from tests.test_app_pipeline import TinyApp

#: docs/tasks.md's pinned code: one module in two folders, each experiment's cells importing their own.
PINNED_TASK = '''import generation


def run(cfg, cell):
    seconds = [generation.seconds(cfg.variant.factor) * (1 + i / 100) for i in range(3)]
    return {"seconds": {"median": seconds[1], "min": seconds[0], "max": seconds[2], "values": seconds}}
'''
EXPERIMENT = """# @package _global_
grid:
  description: The light grid on {name}'s generation.py.
  task: pinned.run
  code: experiments/{name}
  baseline: variant=a
  report:
    figures: [seconds]
hydra:
  sweeper:
    params:
      variant: a,b
"""


def pinned_study(light: Light) -> None:
    """Two experiments, 01_base and 02_faster, that pin two versions of generation.py (the second twice as fast)."""
    (light.cwd / "pinned.py").write_text(PINNED_TASK)
    for name, per_unit in (("01_base", 1.0), ("02_faster", 0.5)):
        folder = light.cwd / "experiments" / name
        folder.mkdir(parents=True)
        (folder / "generation.py").write_text(f"def seconds(factor):\n    return {per_unit} * factor\n")
        (light.cwd / "experiment" / f"{name}.yaml").write_text(EXPERIMENT.format(name=name))


def test_a_report_of_two_experiments_is_one_report_that_compares_them(light: Light) -> None:
    """`--report --experiment 01_base,02_faster --compare experiment=01_base:02_faster`: one report under
    artifacts/01_base+02_faster/ with the experiment a column, and the matched pairs (cells of equal name in the
    two experiments) with the ratio of their figures: 02_faster's pinned module takes half the seconds."""
    pinned_study(light)
    both = ["--experiment", "01_base,02_faster"]
    ran = light.cli(*both).stdout
    assert "sweep 01_base: 0 done, 2 run, 0 failed" in ran and "sweep 02_faster: 0 done, 2 run, 0 failed" in ran, ran
    report = light.cli_here("--report", *both, "--compare", "experiment=01_base:02_faster").stdout
    assert "experiment 01_base+02_faster: 4 cells reported" in report, report
    assert "experiment=01_base:02_faster: 2 matched pairs" in report, report
    pairs = report.split("matched pairs", 1)[1]
    assert "seconds 01_base  seconds 02_faster  seconds 01_base/02_faster" in pairs, pairs
    assert "median change: seconds 01_base/02_faster 2" in pairs, pairs
    out = light.cwd / "artifacts" / "01_base+02_faster"
    frame = pd.read_csv(out / "report.csv")
    assert sorted(zip(frame["experiment"], frame["variant"])) == [
        ("01_base", "a"), ("01_base", "b"), ("02_faster", "a"), ("02_faster", "b")]
    text = (out / "report.md").read_text()
    assert "# 01_base+02_faster" in text and "Baseline: `experiment=01_base,variant=a`" in text, text
    assert "## experiment=01_base:02_faster" in text and "seconds 01_base/02_faster" in text, text
    assert (out / "experiment=02_faster,where=local,variant=b" / "summary.json").is_file()
    assert not (light.cwd / "artifacts" / "01_base").exists()  # one report, not one per experiment
    alone = light.cli_here("--report", "--experiment", "01_base", "--compare", "experiment=01_base:02_faster",
                           check=False)
    assert alone.returncode == 2 and "name both (--report --experiment 01_base,02_faster)" in alone.stderr, alone



def test_a_figure_whose_repeats_spread_too_wide_is_warned_of_with_its_cell(light: Light) -> None:
    """A figure with repeats (the light study's `value`) whose max / min or coefficient of variation passes the
    report's thresholds gets a warning naming the figure, listed with its cell; a tight one and a plain number
    (`count`) none."""
    grid = ["variant=a", "spread=0.01,0.5"]  # values 1, 1.01, 1.02 and 1, 1.5, 2: a coefficient of variation of 33%
    light.cli(*grid)
    light.cli_here("--report", *grid)
    out = light.cwd / "artifacts" / "default"
    frame = pd.read_csv(out / "report.csv", keep_default_na=False).set_index("spread")
    assert frame.loc[0.5, "warnings"] == ("value repeats spread too wide to trust (max/min 2, coefficient of "
                                          "variation 33% over 3 repeats)"), frame["warnings"]
    assert frame.loc[0.01, "warnings"] == ""
    warnings = (out / "report.md").read_text().split("## Warnings", 1)[1]
    assert "- value repeats spread too wide to trust (max/min 2, coefficient of variation 33% over 3 repeats): " \
        "`spread=0.5`" in warnings, warnings
    assert "spread=0.01" not in warnings and "count repeats" not in warnings
    light.cli_here("--report", *grid, "grid.report.spread_cv=0.4")  # max/min 2 is within spread_ratio's 2
    assert "## Warnings" not in (out / "report.md").read_text()


def test_many_comparisons_with_one_baseline_are_adjusted_by_holm(light: Light) -> None:
    """Four repeats a cell, every one of b and c above every one of a: each rank test's p is 2/70 (0.029). One
    comparison (a, b) calls b real; two (a, b, c) adjust both to 4/70 (0.057, Holm), so neither is, and report.md
    and report.csv say so, the raw p beside the adjusted one."""
    out = light.cwd / "artifacts" / "default"
    settings = ["count=4", "spread=0.01"]  # values f, 1.01 f, 1.02 f, 1.03 f for variant factor f = 1, 2, 3
    light.cli("variant=a,b,c", *settings)
    for variants, comparisons, p_holm, noise in (("a,b", 1, 2 / 70, False), ("a,b,c", 2, 4 / 70, True)):
        light.cli_here("--report", f"variant={variants}", *settings)
        frame = pd.read_csv(out / "report.csv").set_index("variant")
        for variant in variants.split(",")[1:]:
            row = frame.loc[variant]
            assert row["p_value"] == pytest.approx(2 / 70) and row["p_holm"] == pytest.approx(p_holm), row
            assert bool(row["within_noise"]) is noise, row
        assert pd.isna(frame.loc["a", "p_holm"])  # the baseline beside itself is no comparison
        text = (out / "report.md").read_text()
        assert f"adjusted by Holm's step-down method for the {comparisons} comparison" in text, text
        line = next(line for line in text.splitlines() if line.startswith("| variant=b "))
        assert line.split("|")[-3].strip().endswith("] ~") is noise, line
    assert "(within the noise of the baseline: p = 0.029, Holm-adjusted 0.057)" in text, text


def test_replicates_run_interleaved_and_the_report_pools_them(light: Light) -> None:
    """`replicate=range(2)`: each configuration runs twice, each time in a process of its own; the light study's
    `grid.interleave: replicate` launches both configurations' first replicates before either second (read from
    the attempts' start times; the grid's own order is a0, a1, b0, b1), and `grid.report.pool: [replicate]`
    makes the report's test pool both replicates' repeats: 6 against 6 values from 2 processes each."""
    grid = ["variant=a,b", "replicate=range(2)"]
    light.cli(*grid)
    started = {tuple(cell.name.split(",")[1:]): attempts(cell)[-1]["started_at"] for cell in light.cell_dirs()}
    order = sorted(started, key=started.get)
    assert order == [("variant=a",), ("variant=b",), ("variant=a", "replicate=1"), ("variant=b", "replicate=1")], \
        started
    light.cli_here("--report", *grid)
    out = light.cwd / "artifacts" / "default"
    frame = pd.read_csv(out / "report.csv").set_index(["variant", "replicate"])
    assert (frame["pooled_processes"] == 2).all() and (frame["pooled_repeats"] == 6).all(), frame
    assert (frame["timed_repeats"] == 3).all()
    pooled = mannwhitneyu([2.0, 4.0, 6.0] * 2, [1.0, 2.0, 3.0] * 2, alternative="two-sided").pvalue
    for replicate in (0, 1):
        row = frame.loc[("b", replicate)]
        assert row["p_value"] == pytest.approx(pooled) and row["p_holm"] == pytest.approx(pooled), row
    text = (out / "report.md").read_text()
    assert "the test and the interval pool the repeats of all of a configuration's replicates (2 processes per " \
        "configuration" in text, text
    assert "for the 1 comparison with a baseline" in text, text  # b once, not once per replicate
    # the best is a configuration, by the median of its pooled repeats (2, 2, 4, 4, 6, 6), not one replicate
    assert "**Best configuration:** `variant=b`: value 4 (range 2 to 6 over 6 repeats in 2 processes), 2.00x" \
        in text, text
    index = (light.cwd / "artifacts" / "README.md").read_text()
    assert "| variant=b (value 4) |" in index, index
    # a configuration of which one replicate has finished: one process, said in the singular
    next(d for d in light.cell_dirs() if d.name.endswith("variant=b,replicate=1")).joinpath("summary.json").unlink()
    light.cli_here("--report", *grid)
    assert "`variant=b`: value 4 (range 2 to 6 over 3 repeats in 1 process)" in (out / "report.md").read_text()


def cells_with(medians: list[float]) -> Report:
    """A report of cells with these medians (each with a spread of +-10%), the first the baseline."""
    names = [f"x={i}" for i in range(len(medians))]
    frame = pd.DataFrame({"cell": names, "state": "done", "x": [str(i) for i in range(len(medians))],
                          "value": medians, "value_min": [m * 0.9 for m in medians],
                          "value_max": [m * 1.1 for m in medians]})
    return Report(frame, ["x"], pd.Series(names, index=frame.index), {n: names[0] for n in names}, [], [], [], {},
                  {}, [Figure("value", "value")], {"done"})


@pytest.mark.parametrize("medians, scale", [([1.0, 2.0, 3.0], "linear"), ([1.0, 8.0], "linear"),
                                            ([1.0, 50.0, 400.0], "log"), ([0.5, 100.0], "log")])
def test_the_throughput_plot_takes_a_log_axis_where_the_figures_span_more_than_10x(medians: list[float],
                                                                                    scale: str) -> None:
    """The figures' axis (horizontal bars: x) is logarithmic where max / min of what it shows (medians and their
    min-max bars) exceeds 10, so the baseline's small bar stays visible beside a 400x one."""
    ax = throughput_axes(cells_with(medians), "t")
    assert ax.get_xscale() == scale
    assert ("log scale" in ax.get_xlabel()) == (scale == "log")
    assert [patch.get_width() for patch in ax.patches] == medians
    plt.close(ax.figure)


def test_an_apps_status_shows_each_done_jobs_stored_value(tmp_path: Path) -> None:
    """`hydra.launcher.action=status` of an app: each done job's returned value (its JSON in `value`), or where a
    value JSON cannot hold is kept (a pickle, never loaded by a status); a job not run has none."""
    app = TinyApp(tmp_path / "app")
    app.run("seed=1", "+as_set=false")
    app.run("seed=2", "+as_set=true")
    jobs = app.status("seed=1,2,3", "+as_set=false,true")
    one = jobs["as_set=false,seed=1"]
    assert one["state"] == "done" and one["value"]["lr"] == 0.1 and one["value"]["seed"] == 1, one
    assert one["value_file"] is None
    kept = jobs["as_set=true,seed=2"]
    assert kept["state"] == "done" and kept["value"] is None and kept["value_file"] == "return_value.pkl", kept
    assert jobs["as_set=false,seed=3"]["state"] == "missing" and jobs["as_set=false,seed=3"]["value"] is None
    lines = app.run("seed=1,2", "+as_set=false,true", "hydra.launcher.action=status").stdout.splitlines()
    shown = {line.split()[2]: line.split(None, 3) for line in lines if line.split()[1:2] and line.split()[1][0] == "#"}
    assert shown["as_set=false,seed=1"][:2] == ["done", "#0"], shown
    assert shown["as_set=false,seed=1"][3].split(None, 2)[2].startswith('returned {"lr": 0.1, "seed": 1, "pid": ')
    assert shown["as_set=true,seed=2"][:2] == ["done", "#3"]
    assert shown["as_set=true,seed=2"][3].endswith("  returned a value kept in return_value.pkl"), shown
    assert shown["as_set=true,seed=1"] == ["missing", "#1", "as_set=true,seed=1"]


#: A task whose summaries say where they ran and what their figure's clock covers, from the cell's settings.
CONTEXT_TASK = '''def run(cfg, cell):
    seconds = [cfg.variant.factor * (1 + i / 100) for i in range(3)]
    return {"seconds": {"median": seconds[1], "min": seconds[0], "max": seconds[2], "values": seconds},
            "where": {"machine": "box one", "variant factor": cfg.variant.factor, "unsaid": None},
            "meaning": {"seconds": "seconds of the whole light pass, sleep included"}}
'''


def test_a_report_states_the_context_and_the_ranking_clock_its_summaries_hold(light: Light) -> None:
    """`grid.report.context` and `grid.report.definitions` name mappings of the summaries: the report lists each
    context name once with its distinct values (counted by cells where they differ) and says what the ranking
    figure's clock covers; change one summary's value and its line changes."""
    (light.cwd / "context_task.py").write_text(CONTEXT_TASK)
    grid = ["variant=a,b", "grid.task=context_task.run", "grid.report.figures=[seconds]",
            "grid.report.lower_is_better=[seconds]", "grid.report.context=where", "grid.report.definitions=meaning"]
    light.cli(*grid)
    light.cli_here("--report", *grid)
    report = light.cwd / "artifacts" / "default" / "report.md"
    text = report.read_text()
    assert "Ranked by `seconds`: seconds of the whole light pass, sleep included." in text, text
    context = text.split("## Context\n\n", 1)[1].split("\n\n", 1)[0]
    # variant a's factor is 1, b's 2 (tests/light/variant/); `unsaid` is None in both: no line
    assert context.splitlines() == ["- machine: box one", "- variant factor: 1 (1 cell); 2 (1 cell)"], context
    summary_path = next((light.cwd / "results" / "default").glob("*variant=b*/summary.json"))
    summary = json.loads(summary_path.read_text())
    summary["where"]["machine"] = "box two"
    summary_path.write_text(json.dumps(summary))
    light.cli_here("--report", *grid)
    assert "- machine: box one (1 cell); box two (1 cell)" in report.read_text()


def test_a_report_whose_baseline_has_not_finished_gives_no_speedup_rather_than_failing(light: Light) -> None:
    """Without pooling (grid.report.pool empty), a baseline with no finished row (its result gone) leaves the other
    cells without a speed-up: the report is still written."""
    light.cli("variant=a,b,c", "grid.report.pool=[]")
    next((light.cwd / "results" / "default").glob("*variant=a*/summary.json")).unlink()
    done = light.cli_here("--report", "variant=a,b,c", "grid.report.pool=[]")
    assert "2 cells reported" in done.stdout, done.stdout + done.stderr
    frame = pd.read_csv(light.cwd / "artifacts" / "default" / "report.csv")
    assert len(frame) == 2 and frame["speedup"].isna().all()
