"""`profile=ncu`: the cell's first batch again, in a process of its own under Nsight Compute, with the NWOR
grids' DRAM counters.

Nsight Compute profiles a process it launches, replaying each kernel to read its counters (tens of times slower
than the kernel), so it cannot wrap the timed passes: after them, the cell runs `ncu_pass` (load, one untimed
warm-up of the batch, then the batch inside the NVTX range `RANGE`) under `ncu`, which profiles only the
kernels in that range, at most `profile.max_kernels` of them. The summary's `profile` block holds the counters
summed over the profiled kernels (DRAM bytes read and written) and the median of their DRAM throughput (% of
peak); ncu's CSV stays in the cell's directory. Where `ncu` is not on the PATH the cell ends unsupported at once;
where it profiles no kernel (a cell on a CPU) it ends unsupported with ncu's own words.
"""
from __future__ import annotations

import csv
import io
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from molgen_grid.bench.attention import Unsupported

#: The NVTX range (push/pop) the profiled batch runs in.
RANGE = "molgen_grid_profiled_batch"
#: ncu's CSV log and the config its child process reads, in the cell's directory.
LOG, CONFIG = "ncu.csv", "ncu_config.yaml"


def ncu_executable(profile_cfg: Any) -> str:
    """The path of `profile.executable` (ncu); unsupported where there is none."""
    found = shutil.which(str(profile_cfg.executable))
    if found is None:
        raise Unsupported(f"profile=ncu: Nsight Compute ({profile_cfg.executable}) is not on the PATH here: run "
                          "the cell where it is (a GPU node with the CUDA toolkit), or set profile.executable")
    return found


def ncu_command(profile_cfg: Any, folder: Path) -> list[str]:
    """ncu's command line around the child process (`python -m molgen_grid.bench.trackers.ncu_pass`)."""
    return [ncu_executable(profile_cfg), "--csv", "--print-units", "base", "--metrics",
            ",".join(profile_cfg.metrics), "--nvtx", "--nvtx-include", f"{RANGE}/", "--launch-count",
            str(int(profile_cfg.max_kernels)), "--target-processes", "all", "--log-file", str(folder / LOG),
            sys.executable, "-m", "molgen_grid.bench.trackers.ncu_pass", str(folder / CONFIG)]


def ncu_profile(cfg: Any, folder: Path) -> dict[str, Any]:
    """Run the first batch under ncu; the summary's `profile` block."""
    OmegaConf.save(cfg, folder / CONFIG, resolve=True)
    run = subprocess.run(ncu_command(cfg.profile, folder), capture_output=True, text=True)
    said = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("==")]
    if run.returncode != 0:
        last = (said or (run.stderr or run.stdout).splitlines() or ["no output"])[-1]
        raise RuntimeError(f"ncu exited {run.returncode}: {last}")
    rows = kernel_metrics((folder / LOG).read_text() if (folder / LOG).exists() else "")
    if not rows:
        raise Unsupported("profile=ncu: ncu profiled no kernel" + (f" ({said[-1]})" if said else ""))
    return {"kind": "ncu", "log": LOG, "kernels": len(rows), **summed(rows, list(cfg.profile.metrics))}


def kernel_metrics(text: str) -> dict[str, dict[str, float]]:
    """Each profiled kernel's metrics from ncu's CSV (one row per kernel and metric; values in base units)."""
    lines = [line for line in text.splitlines() if not line.startswith("==")]
    kernels: dict[str, dict[str, float]] = {}
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        value = row.get("Metric Value", "").replace(",", "")
        if row.get("ID") is None or not value:
            continue
        kernels.setdefault(row["ID"], {"name": row.get("Kernel Name", "")})[row["Metric Name"]] = float(value)
    return kernels


def summed(kernels: dict[str, dict[str, Any]], metrics: list[str]) -> dict[str, Any]:
    """Per metric: a sum over the kernels (bytes, counts), or the median and maximum of a rate (`pct`)."""
    out: dict[str, Any] = {}
    for metric in metrics:
        values = [k[metric] for k in kernels.values() if metric in k]
        if not values:
            out[metric] = None
        elif ".pct_" in metric:
            out[metric] = {"median": statistics.median(values), "max": max(values)}
        else:
            out[metric] = sum(values)
    return out
