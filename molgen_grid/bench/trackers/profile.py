"""A profile of one pass, on request (`profile=torch`): a pass more after the timed ones, so the profiler's own
cost never reaches a timed figure.

torch.profiler records the pass (CPU operators, and CUDA kernels on a GPU); the Chrome trace goes into the cell's
directory (open it in Perfetto or chrome://tracing) and the operators that took the most self time into the
summary, sorted by the device's self time on a GPU and by the CPU's otherwise, so the table answers "where did
the pass go" without opening the trace.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile

TRACE = "profile.json"


def profiled_pass(run: Callable[[], Any], device: torch.device, folder: Path, top: int) -> dict[str, Any]:
    """Run `run()` once under torch.profiler; the summary's `profile` block (the trace's file name, the top
    operators by self time)."""
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as recorded:
        run()
    partial = folder / f"{TRACE}.part"
    recorded.export_chrome_trace(str(partial))
    os.replace(partial, folder / TRACE)  # a trace is whole or absent
    sort_key = "self_device_time_total" if cuda else "self_cpu_time_total"
    averages = sorted(recorded.key_averages(), key=lambda event: getattr(event, sort_key), reverse=True)
    return {
        "kind": "torch",
        "trace": TRACE,
        "sorted_by": sort_key,
        "top_ops": [{"name": event.key, "calls": event.count, "self_cpu_ms": event.self_cpu_time_total / 1e3,
                     "self_device_ms": event.self_device_time_total / 1e3 if cuda else None}
                    for event in averages[:top]],
    }
