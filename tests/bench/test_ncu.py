"""`profile=ncu`: unsupported at once where Nsight Compute is missing (this machine); where it exists, a window of
the first batch's decoding steps runs again in a child process under it and the DRAM counters of the profiled
kernels reach the summary; where it fails or hangs, the profile says so and the cell keeps its timed figures.

This machine has no GPU and no ncu: `FakeNcu` stands in for ncu (named so). It checks the command line the cell
built, really runs the child process it wraps (the real `ncu_pass` on this CPU), and writes the CSV a real ncu
writes for two kernels, or, like a real ncu around a process that launched no kernel, its warning and no rows.
`fake-ncu-for-test` is an ncu that hangs, with a process of its own beside it.
"""
from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .conftest import compose, run_cell

SMALL = ["sample_size=1", "batch_size=1", "max_new_tokens=12", "warmup=0", "repeats=2", "profile.first_step=2",
         "profile.steps=4"]

FAKE_NCU = '''#!{python}
import csv, json, subprocess, sys
args = sys.argv[1:]
child = args[args.index("--log-file") + 2:]
log = args[args.index("--log-file") + 1]
ran = subprocess.run(child)
json.dump({{"args": args[:len(args) - len(child)], "child": child, "child_rc": ran.returncode}},
          open({record!r}, "w"))
if {kernels}:
    rows = [("1", "ampere_sgemm", "dram__bytes_read.sum", "byte", "1,000"),
            ("1", "ampere_sgemm", "dram__bytes_write.sum", "byte", "200"),
            ("1", "ampere_sgemm", "dram__throughput.avg.pct_of_peak_sustained_elapsed", "%", "40.5"),
            ("2", "flash_fwd", "dram__bytes_read.sum", "byte", "3000"),
            ("2", "flash_fwd", "dram__bytes_write.sum", "byte", "800"),
            ("2", "flash_fwd", "dram__throughput.avg.pct_of_peak_sustained_elapsed", "%", "60.5")]
    with open(log, "w", newline="") as out:
        out.write("==PROF== Connected to process\\n")
        writer = csv.writer(out, quoting=csv.QUOTE_ALL)
        writer.writerow(["ID", "Process ID", "Kernel Name", "Metric Name", "Metric Unit", "Metric Value"])
        for kernel, name, metric, unit, value in rows:
            writer.writerow([kernel, "42", name, metric, unit, value])
else:
    open(log, "w").close()
    print("==WARNING== No kernels were profiled.")
sys.exit(ran.returncode)
'''


def fake_ncu(folder: Path, kernels: bool) -> tuple[Path, Path]:
    """A FakeNcu executable in `folder` and the file where it records what it was asked to run."""
    record = folder / "fake_ncu_record.json"
    fake = folder / "fake_ncu"
    fake.write_text(FAKE_NCU.format(python=sys.executable, record=str(record), kernels=kernels))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake, record


def test_without_ncu_the_cell_ends_unsupported_at_once(tmp_path: Path) -> None:
    out = run_cell(compose(*SMALL, "profile.executable=ncu_not_installed_here", profile="ncu"), folder=tmp_path)
    assert out["status"] == "unsupported"
    assert "Nsight Compute (ncu_not_installed_here) is not on the PATH here" in out["reason"]
    assert out["metrics"] == {} and not (tmp_path / "results.json").exists()  # nothing ran


def test_under_fake_ncu_the_first_batch_is_profiled_apart_from_the_timed_passes(tmp_path: Path) -> None:
    fake, record = fake_ncu(tmp_path, kernels=True)
    out = run_cell(compose(*SMALL, f"profile.executable={fake}", profile="ncu"), folder=tmp_path)
    assert out["status"] == "ok", out.get("reason")
    asked = json.loads(record.read_text())
    assert asked["child_rc"] == 0  # the real child process ran the batch on this CPU
    assert asked["child"][1:3] == ["-m", "molgen_grid.bench.trackers.ncu_pass"]
    args = asked["args"]
    assert args[args.index("--metrics") + 1] == ("dram__bytes_read.sum,dram__bytes_write.sum,"
                                                 "dram__throughput.avg.pct_of_peak_sustained_elapsed")
    assert args[args.index("--nvtx-include") + 1] == "molgen_grid_profiled_steps/"
    assert "--launch-count" not in args and "base" in args
    child = asked["child"]  # the window of steps is the child's, on its command line
    assert child[child.index("--first-step") + 1] == "2" and child[child.index("--steps") + 1] == "4"
    block = out["profile"]
    # steps 3..6 ran inside the window, as the child's step clock counted them
    assert block == {"kind": "ncu", "log": "ncu.csv", "kernels": 2, "dram__bytes_read.sum": 4000.0,
                     "window": {"first_step": 2, "steps": 4, "decode_steps_profiled": [3, 6]},
                     "dram__bytes_write.sum": 1000.0,
                     "dram__throughput.avg.pct_of_peak_sustained_elapsed": {"median": 50.5, "max": 60.5}}
    assert len(out["metrics"]["tokens_per_s"]["values"]) == 2  # the profiled batch is not a timed pass


def test_an_ncu_that_profiled_no_kernel_leaves_the_cell_done_with_its_words_as_the_profiles_error(
        tmp_path: Path) -> None:
    fake, _ = fake_ncu(tmp_path, kernels=False)
    out = run_cell(compose(*SMALL, f"profile.executable={fake}", profile="ncu"), folder=tmp_path)
    assert out["status"] == "ok" and len(out["metrics"]["tokens_per_s"]["values"]) == 2
    assert out["profile"] == {"kind": "ncu",
                              "error": "profile=ncu: ncu profiled no kernel (==WARNING== No kernels were profiled.)"}


HANGING_NCU = '''#!/bin/sh
sleep 300 &
echo "$$ $!" > {pids}
wait
'''


@pytest.fixture
def hanging_ncu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`fake-ncu-for-test` on the PATH: it starts a process beside it, writes both ids to the returned file and
    waits for ever."""
    pids = tmp_path / "hanging_pids"
    fake = tmp_path / "bin" / "fake-ncu-for-test"
    fake.parent.mkdir()
    fake.write_text(HANGING_NCU.format(pids=pids))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    return pids


def gone(pid: int) -> bool:
    """The process has ended and been reaped (a zombie still answers a signal)."""
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_an_ncu_past_its_time_limit_is_killed_with_its_group_and_the_cell_keeps_its_figures(
        tmp_path: Path, hanging_ncu: Path) -> None:
    out = run_cell(compose(*SMALL, "profile.executable=fake-ncu-for-test", "profile.timeout_s=2",
                           profile="ncu"), folder=tmp_path)
    assert out["status"] == "ok" and len(out["metrics"]["tokens_per_s"]["values"]) == 2
    assert out["profile"]["error"] == ("profile=ncu: ncu ran past profile.timeout_s=2 s: its process group was "
                                       "killed")
    assert all(gone(int(pid)) for pid in hanging_ncu.read_text().split())


def test_a_hung_ncu_dies_with_its_group_when_the_cells_guard_fires(tmp_path: Path, hanging_ncu: Path) -> None:
    """Through the engine's give_up, which ends the process at once: the profiler is gone before it is called."""
    from molgen_grid.bench.cell import run_cell as task
    from molgen_grid.grid.task import CellHandle

    seen: dict[str, bool] = {}

    def give_up(reason: str, detail: str) -> None:  # the engine's would end the process here
        seen[reason] = all(gone(int(pid)) for pid in hanging_ncu.read_text().split())

    cfg = compose(*SMALL, "profile.executable=fake-ncu-for-test", "profile.timeout_s=600", "hang.warmup_s=6",
                  "hang.min_s=60", profile="ncu")
    with tempfile.TemporaryDirectory() as scratch:
        out = task(cfg, CellHandle(name="test", experiment="test", dir=Path(scratch), cpus=1, give_up=give_up))
    assert seen == {"hung: no progress in 6 s (ncu profile)": True}
    assert out["status"] == "unsupported" and out["reason"] == "hung: no progress in 6 s (ncu profile)"
