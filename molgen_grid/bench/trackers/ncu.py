"""`profile=ncu`: a window of decoding steps of the cell's first batch, in a process of its own under Nsight
Compute, with the NWOR grids' DRAM counters.

Nsight Compute profiles a process it launches, replaying each kernel to read its counters (tens of times slower
than the kernel), so it cannot wrap the timed passes: after them, the cell runs `ncu_pass` (load, one untimed
warm-up of the batch, then the batch again) under `ncu`, which profiles only the kernels launched inside the NVTX
range `RANGE`. The range is a window of decoding steps, the same in every cell: it opens when generate() has
chosen the token of step `profile.first_step` and closes after step `first_step + steps` (steps as generate()'s
loop counts them: the prefill is step 1), so it holds every kernel of those `steps` steps whatever the model,
its layers or its compile (a kernel count would cover fewer steps of a bigger model). A batch that ends sooner
closes it at its end; the child writes the steps it covered (`WINDOW`), the summary says them.

The summary's `profile` block holds the counters summed over the profiled kernels (DRAM bytes read and written),
the median of their DRAM throughput (% of peak) and the window; ncu's CSV stays in the cell's directory. ncu runs
in a process group of its own for at most `profile.timeout_s`, then the group is killed; so it is when the
cell's hang guard fires (`Watchdog.guard`'s `on_fire`), so that no profiler outlives its cell. Where `ncu` is
not on the PATH the cell ends unsupported at once; where it fails, is refused (no permission for the counters),
runs out of time or profiles no kernel, `ProfileError` says so, and the cell keeps its timed figures (cell.py).
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from molgen_grid.bench.attention import Unsupported
from molgen_grid.bench.watchdog import Watchdog

#: The NVTX range (push/pop) around the profiled window of decoding steps.
RANGE = "molgen_grid_profiled_steps"
#: ncu's CSV log, the config its child process reads and the window the child covered, in the cell's directory.
LOG, CONFIG, WINDOW = "ncu.csv", "ncu_config.yaml", "ncu_window.json"


class ProfileError(RuntimeError):
    """The profiler failed, was refused or ran out of time: the profile's error, never the cell's."""


def ncu_executable(profile_cfg: Any) -> str:
    """The path of `profile.executable` (ncu); unsupported where there is none."""
    found = shutil.which(str(profile_cfg.executable))
    if found is None:
        raise Unsupported(f"profile=ncu: Nsight Compute ({profile_cfg.executable}) is not on the PATH here: run "
                          "the cell where it is (a GPU node with the CUDA toolkit), or set profile.executable")
    return found


def ncu_command(profile_cfg: Any, folder: Path) -> list[str]:
    """ncu's command line around the child process (`python -m molgen_grid.bench.trackers.ncu_pass`), which is
    told its window of steps."""
    return [ncu_executable(profile_cfg), "--csv", "--print-units", "base", "--metrics",
            ",".join(profile_cfg.metrics), "--nvtx", "--nvtx-include", f"{RANGE}/", "--target-processes", "all",
            "--log-file", str(folder / LOG), sys.executable, "-m", "molgen_grid.bench.trackers.ncu_pass",
            str(folder / CONFIG), "--first-step", str(int(profile_cfg.first_step)),
            "--steps", str(int(profile_cfg.steps)), "--window-file", str(folder / WINDOW)]


def kill_group(child: subprocess.Popen) -> None:
    """SIGKILL to the child's process group (ncu and the process it profiles), then reap the child."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


def run_ncu(profile_cfg: Any, folder: Path, watchdog: Watchdog, guard_s: float) -> tuple[int, str]:
    """ncu's exit status and output, in a group of its own, killed after `profile.timeout_s` or when the
    watchdog fires (its guard: `guard_s`)."""
    limit = float(profile_cfg.timeout_s)
    with subprocess.Popen(ncu_command(profile_cfg, folder), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, start_new_session=True) as child:
        try:
            with watchdog.guard(guard_s, "ncu profile", on_fire=lambda: kill_group(child)):
                output, _ = child.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            kill_group(child)
            raise ProfileError(f"profile=ncu: ncu ran past profile.timeout_s={limit:g} s: its process group "
                               "was killed") from None
        except BaseException:  # the watchdog's interrupt, or anything else: never leave the profiler running
            kill_group(child)
            raise
    if watchdog.fired is not None:  # killed by the watchdog's on_fire
        watchdog.await_end()
    return child.returncode, output


def ncu_profile(cfg: Any, folder: Path, watchdog: Watchdog) -> dict[str, Any]:
    """Run the window of steps under ncu; the summary's `profile` block."""
    OmegaConf.save(cfg, folder / CONFIG, resolve=True)
    returncode, output = run_ncu(cfg.profile, folder, watchdog, float(cfg.hang.warmup_s))
    said = [line for line in output.splitlines() if line.startswith("==")]
    if returncode != 0:
        last = (said or output.splitlines() or ["no output"])[-1]
        raise ProfileError(f"profile=ncu: ncu exited {returncode}: {last}")
    rows = kernel_metrics((folder / LOG).read_text() if (folder / LOG).exists() else "")
    if not rows:
        raise ProfileError("profile=ncu: ncu profiled no kernel" + (f" ({said[-1]})" if said else ""))
    window = json.loads((folder / WINDOW).read_text())
    return {"kind": "ncu", "log": LOG, "kernels": len(rows), "window": window,
            **summed(rows, list(cfg.profile.metrics))}


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
