"""Time left: the arithmetic of an estimate (estimate.py), and what --dry-run, --status and a run say of it on the
light study, whose cells take known times (`seconds=1`)."""
from __future__ import annotations

import json
import re
import statistics

import pytest

from conftest import Light, attempts
from molgen_grid.grid.estimate import Group, duration, off_by, run_time, time_left
from molgen_grid.grid.store import SUMMARY
from molgen_grid.grid.task import REQUIRED_KEYS


def test_a_run_time_is_a_finished_cells_own_clock() -> None:
    assert run_time({"status": "ok", "started_at": 100.0, "finished_at": 102.5}) == 2.5
    assert run_time({"status": "unsupported", "started_at": 100.0, "finished_at": 100.1}) is None
    assert run_time({"status": "ok", "finished_at": 102.5}) is None
    assert run_time(None) is None


@pytest.mark.parametrize("waiting, running, parallelism, seconds", [
    (4, [], 1, 40.0),             # one after another: the sum
    (4, [], 32, 10.0),            # all at once: one median
    (3, [], 2, 20.0),             # two waves
    (2, [4.0], 1, 26.0),          # a running cell counts what is left of its median
    (0, [25.0], 1, 0.0),          # one past its median counts nothing more
    (0, [0.0, 0.0], 1, 20.0),     # running beyond the slots (another sweep's) waits its turn
    (1, [6.0, 0.0], 2, 14.0),     # the waiting cell takes the slot that frees first
])
def test_time_left_with_parallelism_and_running_cells(waiting: int, running: list[float], parallelism: int,
                                                      seconds: float) -> None:
    assert time_left(10.0, waiting, running, parallelism) == pytest.approx(seconds)


def test_estimates_are_off_by_the_median_relative_error() -> None:
    assert off_by([(10.0, 11.2), (10.0, 9.0), (20.0, 25.0)]) == pytest.approx(0.12)
    assert off_by([]) is None


def test_durations_read_in_the_units_of_a_runs_lines() -> None:
    assert [duration(s) for s in (4.04, 45, 138, 5400, 2 * 86400)] == ["4.0s", "45s", "2.3m", "1.5h", "2.0d"]


def test_a_groups_line_names_what_it_rests_on() -> None:
    slurm = Group("where=h100", {"executor": "slurm", "partition": "h100", "gres": "gpu:h100:1"}, 2,
                  times=[60.0, 120.0, 600.0], waiting={"a", "b", "c"})
    assert slurm.line() == ("time left where=h100 (slurm, h100): ~4.0m for 3 cells (median 2.0m of 3 done) at 2 at "
                            "a time (grid.slurm.array_parallelism; the partition's free slots are unknown: not a "
                            "promise), gpu:h100:1 x 0.1 h")
    local = Group("where=local", {"executor": "local"}, 1, times=[1.0], waiting={"a"}, running={"b": 0.5})
    assert local.line() == "time left where=local (local): ~1.5s for 2 cells (median 1.0s of 1 done), one after another"
    assert Group("where=a100", {"executor": "slurm", "partition": "a100"}, 32, waiting={"a"}).line() == \
        "time left where=a100 (slurm, a100): no estimate for 1 cell (none done yet)"


def seconds_in(text: str) -> float:
    """The estimate of a `~4.1s` / `~1.2m` figure, in seconds."""
    number, unit = re.fullmatch(r"([\d.]+)([smhd])", text).groups()
    return float(number) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def test_a_run_records_its_estimates_and_a_dry_run_estimates_the_cells_left(light: Light) -> None:
    before = light.cli_here("--dry-run", "variant=a,b", "seconds=1").stdout
    assert "time left where=local (local): no estimate for 2 cells (none done yet)" in before

    run = light.cli("variant=a,b", "seconds=1").stdout
    first, second = sorted(light.cell_dirs(), key=lambda d: json.loads((d / SUMMARY).read_text())["finished_at"])
    took = [run_time(json.loads((d / SUMMARY).read_text())) for d in (first, second)]
    assert all(t >= 1 for t in took), took
    # The first cell ran with no estimate; the second was claimed with the first's time, and its line says so.
    assert "estimate_s" not in attempts(first)[-1]
    assert attempts(second)[-1]["estimate_s"] == pytest.approx(took[0], abs=1e-3)
    assert 0.5 <= took[1] / attempts(second)[-1]["estimate_s"] <= 2  # the estimate within a factor of two
    assert re.search(r"\[1/2\] where=local,variant=\w,seconds=1: ok in [\d.]+s, value \d+ \(~[\d.]+s left\)", run)
    error = f"{took[1] / round(took[0], 3) - 1:+.0%}"
    assert f"estimates were off by a median of {error} (1 cell)\nsweep default: 0 done, 2 run, 0 failed\n" in run
    assert f"estimates were off by a median of {error} (1 cell)" in light.cli_here("--status", "variant=a,b",
                                                                                   "seconds=1").stdout

    # 4 more cells (variant=c, and scale=2 of each variant) beside the 2 done: the sum of 4 medians, each at least
    # the second a cell sleeps (a cell's clock also counts composing its config: about a second more on a busy
    # 2-core machine, so no upper bound is asserted but the medians' own).
    plan = light.cli_here("--dry-run", "variant=a,b,c", "scale=1.0,2", "seconds=1").stdout
    found = re.search(r"time left where=local \(local\): ~(\S+) for 4 cells \(median (\S+) of 2 done\), one after "
                      r"another", plan)
    assert found, plan
    assert found[2] == duration(statistics.median(took))
    assert seconds_in(found[1]) >= 4
    assert seconds_in(found[1]) == pytest.approx(4 * statistics.median(took), rel=0.05)


def done_summary(cell: str, seconds: float) -> dict:
    """The summary of a cell that ran `seconds` on a partition of the test cluster (written here: a dry run needs
    no submission)."""
    return {**{key: {} for key in REQUIRED_KEYS}, "cell": cell, "experiment": "default", "status": "ok",
            "started_at": 1000.0, "finished_at": 1000.0 + seconds}


def test_each_partition_is_estimated_from_its_own_done_cells(light: Light) -> None:
    for variant, seconds in (("a", 1.0), ("b", 3.0)):
        cell = light.results / "default" / f"where=h100,variant={variant}"
        cell.mkdir(parents=True)
        (cell / SUMMARY).write_text(json.dumps(done_summary(cell.name, seconds)))
    (light.results / "default" / ".slurm").mkdir()  # the engine's own folder beside the cells' is no cell
    plan = light.cli_here("--dry-run", "where=h100,a100", "variant=a,b,c", "grid.stale=keep").stdout
    assert ("time left where=h100 (slurm, h100): ~2.0s for 1 cell (median 2.0s of 2 done) at 32 at a time "
            "(grid.slurm.array_parallelism; the partition's free slots are unknown: not a promise), gpu:h100:1 x "
            "0.000556 h") in plan
    assert "time left where=a100 (slurm, a100): no estimate for 3 cells (none done yet)" in plan
