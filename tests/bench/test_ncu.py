"""`profile=ncu`: unsupported at once where Nsight Compute is missing (this machine); where it exists, the first
batch runs again in a child process under it and the DRAM counters of the profiled kernels reach the summary.

This machine has no GPU and no ncu: `FakeNcu` stands in for ncu (named so). It checks the command line the cell
built, really runs the child process it wraps (the real `ncu_pass` on this CPU), and writes the CSV a real ncu
writes for two kernels, or, like a real ncu around a process that launched no kernel, its warning and no rows.
"""
from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

from .conftest import compose, run_cell

SMALL = ["sample_size=1", "batch_size=1", "max_new_tokens=12", "warmup=0", "repeats=2"]

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
    assert args[args.index("--nvtx-include") + 1] == "molgen_grid_profiled_batch/"
    assert args[args.index("--launch-count") + 1] == "2000" and "base" in args
    block = out["profile"]
    assert block == {"kind": "ncu", "log": "ncu.csv", "kernels": 2, "dram__bytes_read.sum": 4000.0,
                     "dram__bytes_write.sum": 1000.0,
                     "dram__throughput.avg.pct_of_peak_sustained_elapsed": {"median": 50.5, "max": 60.5}}
    assert len(out["metrics"]["tokens_per_s"]["values"]) == 2  # the profiled batch is not a timed pass


def test_an_ncu_that_profiled_no_kernel_ends_the_cell_unsupported_in_its_words(tmp_path: Path) -> None:
    fake, _ = fake_ncu(tmp_path, kernels=False)
    out = run_cell(compose(*SMALL, f"profile.executable={fake}", profile="ncu"), folder=tmp_path)
    assert out["status"] == "unsupported"
    assert out["reason"] == "profile=ncu: ncu profiled no kernel (==WARNING== No kernels were profiled.)"
