"""Figures over timed repeats, and the memory of this process."""
from __future__ import annotations

import resource
import statistics

import torch

#: Above this relative spread ((max - min) / median) a figure is flagged as too noisy to trust.
NOISY_SPREAD = 0.3


def spread(values: list[float]) -> dict:
    """`{"median", "min", "max", "values"}` as the summary reports every timed figure."""
    clean = [v for v in values if v is not None]
    if not clean:
        return {"median": None, "min": None, "max": None, "values": values}
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean), "values": values}


def noisy(name: str, figure: dict) -> str | None:
    median = figure.get("median")
    if not median or len(figure["values"]) < 2:
        return None
    relative = (figure["max"] - figure["min"]) / median
    if relative > NOISY_SPREAD:
        return f"{name} spread {relative:.0%} of its median over {len(figure['values'])} repeats: too wide to trust"
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process (the cell runs in a process of its own)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_gpu_mem_mb(device: torch.device) -> dict | None:
    if device.type != "cuda":
        return None
    return {"allocated": torch.cuda.max_memory_allocated(device) / 2**20,
            "reserved": torch.cuda.max_memory_reserved(device) / 2**20}


class Clock:
    """Wall time of a region; on CUDA, CUDA events and one synchronize at the end."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __enter__(self) -> "Clock":
        import time

        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        import time

        if self.cuda:
            self._end.record()
            self._end.synchronize()
            self.seconds = self._start.elapsed_time(self._end) / 1000
        else:
            self.seconds = time.perf_counter() - self._t0
