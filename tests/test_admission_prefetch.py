"""A scheduler's submission limits are asked as a sweep that may send cells to it begins to plan, in a thread of
their own, so that sacctmgr's answer (a few tenths of a second from slurmdbd) comes while the grid is planned rather
than after it (issue 31, item 2: the status table). The read itself is faked here (a function in place of
sacctmgr, and a gate that holds it): what is tested is when and where it runs; the real read, and how many sacctmgr
calls a sweep makes, are tested on the test cluster (test_submit_limits.py)."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from conftest import Light
from molgen_grid.grid.executors.slurm import SlurmExecutor
from molgen_grid.grid.executors.slurm_limits import SubmitLimits
from molgen_grid.grid.settings import read_settings
from molgen_grid.grid.spec import GridSpec

#: What the faked read answers: no limit set.
NO_LIMIT = SubmitLimits()


def test_a_slurm_grids_table_and_dry_run_ask_the_limits_before_its_cells_are_named(
        light: Light, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    prefetch, cells = SlurmExecutor.prefetch, GridSpec.cells
    monkeypatch.setattr(SubmitLimits, "read", lambda: events.append("read") or NO_LIMIT)
    monkeypatch.setattr(SlurmExecutor, "prefetch", lambda self: events.append("prefetch") or prefetch(self))
    monkeypatch.setattr(GridSpec, "cells", lambda self, *args: events.append("cells named") or cells(self, *args))
    grid = ["where=h100,local", "variant=a,b"]
    for action in ("--status", "--dry-run"):
        events.clear()
        out = light.cli_here(*grid, action).stdout
        assert "4 cells" in out or "4 of 4 cells would run" in out, out
        in_order = [e for e in events if e != "read"]  # the read's own thread appends whenever it runs
        assert in_order[:2] == ["prefetch", "cells named"] and events.count("read") == 1, (action, events)
    # a grid whose every cell has its folder (a finished one; here, folders made so) starts no read before its
    # plan, and its table still asks the limits where cells would run
    for cell in json.loads(light.cli_here(*grid, "--status", "--json").stdout)["cells"]:
        (light.results / "default" / cell["cell"]).mkdir(parents=True)
    events.clear()
    assert "4 cells" in light.cli_here(*grid, "--status").stdout
    assert events == ["cells named", "read"], events
    # a machine's reading, and a grid that runs here, ask no scheduler
    for asked in (["where=h100", "variant=a", "--status", "--json"], ["where=local", "variant=a,b", "--status"]):
        events.clear()
        light.cli_here(*asked)
        assert events == ["cells named"], (asked, events)


def test_the_limits_are_read_once_in_a_thread_of_their_own_while_the_caller_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    reads: list[tuple[str, bool]] = []

    def read() -> SubmitLimits:
        # held until the caller, back from prefetch, opens the gate: a read made in the caller's thread would wait
        # out the timeout here and record False
        reads.append((threading.current_thread().name, gate.wait(timeout=60)))
        return NO_LIMIT

    monkeypatch.setattr(SubmitLimits, "read", read)
    executor = SlurmExecutor(read_settings({"task": "x.y"}), tmp_path)
    executor.prefetch()
    executor.prefetch()  # a second call starts nothing more
    gate.set()
    assert executor.limits is NO_LIMIT and executor.limits is NO_LIMIT
    assert reads == [("slurm-limits", True)]
    assert executor.admit([{"partition": "h100"}] * 3) == ([True] * 3, [])


def test_a_failed_read_is_raised_where_the_limits_are_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read() -> SubmitLimits:
        raise RuntimeError("slurmdbd said no")

    monkeypatch.setattr(SubmitLimits, "read", read)
    executor = SlurmExecutor(read_settings({"task": "x.y"}), tmp_path)
    executor.prefetch()
    with pytest.raises(RuntimeError, match="slurmdbd said no"):
        executor.admit([{"partition": "h100"}])
