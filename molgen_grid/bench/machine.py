"""Did other work compete with the cell? The machine's load before and after, and the CPU others used meanwhile.

A benchmark on a shared machine measures whatever else runs there too (two sweeps on one laptop, a busy Slurm
node). The load average alone lags by a minute, so the cell also counts the CPU time the whole machine spent
(`/proc/stat`) minus its own (`getrusage`) over the cell's wall time: the cores other processes kept busy. On
CUDA it lists the other processes that hold a GPU (NVML), the work that shares the device itself. NVML names
them by the host's pids: in a container (a PID namespace of its own) this process's pid is not among them, so
the check cannot tell its own entry apart; it then counts only what must be others (every process NVML lists
but one) and says why (`gpu_sharing`), instead of calling the cell itself another process.
"""
from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from typing import Any

#: Above this many cores kept busy by other processes, on average over the cell, the figures are flagged.
OTHER_CORES_WARNING = 0.25
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: The host's (initial) PID namespace, the kernel's PROC_PID_INIT_INO: the namespace of the pids NVML reports.
HOST_PID_NAMESPACE = "pid:[4026531836]"


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
    """The (host) pids NVML lists as computing on any of the machine's GPUs; None where NVML cannot be read."""
    try:
        import pynvml as nvml

        nvml.nvmlInit()
    except Exception:  # no pynvml, no driver: NVMLError and its many subclasses
        return None
    try:
        return tuple(sorted({p.pid for i in range(nvml.nvmlDeviceGetCount())
                             for p in nvml.nvmlDeviceGetComputeRunningProcesses(nvml.nvmlDeviceGetHandleByIndex(i))}))
    except Exception:
        return None
    finally:
        nvml.nvmlShutdown()


def _own_host_pid() -> int | None:
    """This process's pid as NVML names it: its own pid in the host's PID namespace, else unknown (None)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return os.getpid() if namespace == HOST_PID_NAMESPACE else None


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
    gpu_block, gpu_warning = gpu_sharing(before.gpu_processes, after.gpu_processes, _own_host_pid())
    block = {
        "loadavg_before": list(before.loadavg), "loadavg_after": list(after.loadavg),
        "other_cores": other_cores, "cpus": os.cpu_count(), **gpu_block,
    }
    warnings = []
    if other_cores is not None and other_cores > OTHER_CORES_WARNING:
        warnings.append(f"other processes kept {other_cores:.2f} cores busy during the cell "
                        f"(load average {before.loadavg[0]:.2f} before, {after.loadavg[0]:.2f} after): "
                        "its figures measure a shared machine")
    return block, warnings + ([gpu_warning] if gpu_warning else [])


def gpu_sharing(before: tuple[int, ...] | None, after: tuple[int, ...] | None,
                own: int | None) -> tuple[dict[str, Any], str | None]:
    """The GPU part of the `load` block, and its warning: other pids where this process's host pid is known;
    otherwise the processes that must be others (all NVML listed but one, this cell's), with the reason."""
    if after is None:
        return {"gpu_other_processes": None, "gpu_sharing": None}, None
    seen = sorted(set((before or ()) + after))
    if own is not None:
        others = [pid for pid in seen if pid != own]
        warning = f"other processes used the GPU during the cell (pids {', '.join(map(str, others))})"
        return {"gpu_other_processes": others, "gpu_sharing": "by pid"}, warning if others else None
    at_least = max(0, len(seen) - 1)
    reason = (f"this process runs in a PID namespace of its own (a container): NVML's host pids ({len(seen)} "
              f"listed) cannot be matched with its own, so at least {at_least} other processes")
    warning = f"at least {at_least} other processes used the GPU during the cell (NVML listed {len(seen)})"
    return {"gpu_other_processes": None, "gpu_sharing": reason}, warning if at_least else None
