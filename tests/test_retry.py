"""Retries that adapt: a cell given up after `grid.retry.max_attempts` failures in a row, `--fail-fast`, and a
Slurm request that grows after OUT_OF_MEMORY or TIMEOUT (the real TIMEOUT is test_slurm.py's
test_time_limit_shows_timeout_and_is_resubmitted_with_twice_the_time)."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Light, attempts
from molgen_grid.errors import InputError
from molgen_grid.grid.executors.slurm import SlurmExecutor, SlurmView
from molgen_grid.grid.executors.slurm_retry import Limits
from molgen_grid.grid.executors.slurm_status import ClusterView, SlurmJob
from molgen_grid.grid.plan import Entry
from molgen_grid.grid.settings import read_settings
from molgen_grid.grid.store import CellStore

GIVE_UP = ["variant=a", "fail=boom", "grid.retry.max_attempts=2"]


def test_a_cell_failed_max_attempts_times_is_given_up_until_forced(light: Light) -> None:
    for _ in range(2):
        assert "failed" in light.cli(*GIVE_UP, check=False).stdout
    (name,) = light.states(*GIVE_UP)
    third = light.cli(*GIVE_UP, check=False)
    assert "0 to run" in third.stdout and ": running (" not in third.stdout, third.stdout
    assert f"{name}: gave up after 2 attempts: --force to run it again (the last: RuntimeError: boom)" \
        in third.stdout and "0 run, 1 failed" in third.stdout
    assert len(attempts(light.results / "default" / name)) == 2
    (cell,) = light.status(*GIVE_UP)["cells"]
    assert cell["state"] == "failed" and cell["reason"].startswith("gave up after 2 attempts: --force")
    plan = light.cli_here("--dry-run", *GIVE_UP).stdout
    assert "0 of 1 cell would run" in plan and f"skip  {name}  (gave up after 2 attempts" in plan
    forced = light.cli(*GIVE_UP, "--force", check=False)
    assert "running (forced)" in forced.stdout and len(attempts(light.results / "default" / name)) == 3


def test_fail_fast_stops_launching_after_the_first_failure(light: Light) -> None:
    grid = ["variant=a,b", "fail=boom"]
    out = light.cli(*grid, "--fail-fast", check=False).stdout
    assert out.count("running (missing)") == 1 and "0 run, 1 failed" in out, out
    assert sorted(light.states(*grid).values()) == ["failed", "missing"]


def slurm_cell(tmp_path: Path, job: SlurmJob, asked: dict) -> tuple[SlurmExecutor, Entry]:
    """A cell whose last Slurm attempt asked `asked` and whose job sacct reads as `job`, planned as a run would."""
    store = CellStore(tmp_path, "where=h100")
    store.dir.mkdir(parents=True)
    store.append_attempt({"attempt": "a1", "executor": "slurm", "why": "missing", "job_id": "7_0", **asked})
    state = SlurmView(ClusterView({"7_0": job})).job_state(store.attempts()[-1], None)
    executor = SlurmExecutor(read_settings({"task": "x.y"}), tmp_path)
    executor.growth._limits = {"h100": Limits(time_min=90, mem_gb=100.0)}
    return executor, Entry(None, store, lambda cell: {}, state, "failed")


def test_unit_out_of_memory_read_by_the_view_doubles_mem_gb_within_the_partition(tmp_path: Path) -> None:
    """Unit test of the decision (the test cluster cannot run out of memory on demand): sacct's OUT_OF_MEMORY
    -> the failed state -> twice the memory the failed attempt asked, capped at the partition's limit."""
    option = {"executor": "slurm", "partition": "h100", "mem_gb": 32, "time_min": 10}
    executor, entry = slurm_cell(tmp_path, SlurmJob("OUT_OF_MEMORY", False, "0:125", None), {"mem_gb": 64})
    assert entry.state.reason.startswith("OUT_OF_MEMORY")
    grown, note = executor.request(entry, option)
    assert grown == {**option, "mem_gb": 100.0}
    assert note == "mem_gb 64 -> 100 after OUT_OF_MEMORY (capped at partition h100's limit of 100)"
    executor, entry = slurm_cell(tmp_path / "b", SlurmJob("TIMEOUT", False, "0:0", None), {"time_min": 10})
    assert executor.request(entry, option) == ({**option, "time_min": 20}, "time_min 10 -> 20 after TIMEOUT")
    executor, entry = slurm_cell(tmp_path / "c", SlurmJob("CANCELLED", False, "0:0", None), {"time_min": 10})
    assert executor.request(entry, option) == (option, None)


def test_retry_settings_are_checked() -> None:
    with pytest.raises(InputError, match=r"grid.retry.max_attempts=0: give a number of attempts of 1 or more"):
        read_settings({"task": "x.y", "retry": {"max_attempts": 0}})
    with pytest.raises(InputError, match=r"grid.retry.grow.memory=0.5: a factor of 1 or more"):
        read_settings({"task": "x.y", "retry": {"grow": {"memory": 0.5}}})
    assert read_settings({"task": "x.y"}).retry.max_attempts is None
