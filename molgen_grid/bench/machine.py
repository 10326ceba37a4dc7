"""Did other work compete with the cell? The machine's load before and after, and the CPU others used meanwhile.

A benchmark on a shared machine measures whatever else runs there too (two sweeps on one laptop, a busy Slurm
node). The load average alone lags by a minute, so the cell also counts the CPU time the whole machine spent
(`/proc/stat`) minus its own (`getrusage`) over the cell's wall time: the cores other processes kept busy. On
CUDA it lists the other processes that hold the GPU (nvidia-smi), the work that shares the device itself.
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any

#: Above this many cores kept busy by other processes, on average over the cell, the figures are flagged.
OTHER_CORES_WARNING = 0.25
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Snapshot:
    when: float
    loadavg: tuple[float, float, float]
    #: Seconds of CPU the whole machine spent busy since boot (None where /proc/stat cannot be read).
    machine_busy_s: float | None
    own_cpu_s: float
    gpu_processes: tuple[int, ...] | None


def _machine_busy_s() -> float | None:
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait is busy
    return (sum(fields[:8]) - fields[3] - fields[4]) / _CLOCK_TICKS


def _gpu_processes() -> tuple[int, ...] | None:
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return None
    try:
        out = subprocess.run([nvidia_smi, "--query-compute-apps=pid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return tuple(int(line) for line in out.split() if line.strip().isdigit())


def snapshot(cuda: bool) -> Snapshot:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return Snapshot(time.time(), os.getloadavg(), _machine_busy_s(), usage.ru_utime + usage.ru_stime,
                    _gpu_processes() if cuda else None)


def competition(before: Snapshot, after: Snapshot) -> tuple[dict[str, Any], list[str]]:
    """The summary's `load` block and its warnings."""
    wall = max(after.when - before.when, 1e-9)
    other_cores = None
    if before.machine_busy_s is not None and after.machine_busy_s is not None:
        other = (after.machine_busy_s - before.machine_busy_s) - (after.own_cpu_s - before.own_cpu_s)
        other_cores = max(0.0, other / wall)
    others_on_gpu = sorted(set((before.gpu_processes or ()) + (after.gpu_processes or ())) - {os.getpid()})
    block = {
        "loadavg_before": list(before.loadavg), "loadavg_after": list(after.loadavg),
        "other_cores": other_cores, "cpus": os.cpu_count(),
        "gpu_other_processes": None if after.gpu_processes is None else others_on_gpu,
    }
    warnings = []
    if other_cores is not None and other_cores > OTHER_CORES_WARNING:
        warnings.append(f"other processes kept {other_cores:.2f} cores busy during the cell "
                        f"(load average {before.loadavg[0]:.2f} before, {after.loadavg[0]:.2f} after): "
                        "its figures measure a shared machine")
    if others_on_gpu:
        warnings.append(f"other processes used the GPU during the cell (pids {', '.join(map(str, others_on_gpu))})")
    return block, warnings
