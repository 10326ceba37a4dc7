"""Clocks and figures: decode steps and time to first token, spread over repeats, the memory of this process.

The step clock is a stopping criterion because that is the one hook generate() calls once per decoding step
*after* the step's token was chosen, in every decoding mode: transformers runs custom logits processors before
its own warpers (temperature, top-p, min-p), so a logits-processor hook would see the first token's scores
before they were finished. Its first call therefore marks the first token, everything included (prefill, every
processor and warper, the sampling or beam selection); its call count is the number of decoding steps, which
does not depend on how many rows of the batch ended early.
"""
from __future__ import annotations

import resource
import statistics
import time
from typing import Any

import torch
from transformers import StoppingCriteria

#: Above this relative spread ((max - min) / median) a figure is flagged as too noisy to trust.
NOISY_SPREAD = 0.3


class StepClock(StoppingCriteria):
    """One generate() call's wall time, time to first token and decoding steps, with no host sync per step.

    On a CPU the first token's mark is the host clock. On CUDA it records a timing event on the device's
    current stream, so it covers the device's work up to that point without waiting for it; both events are
    resolved once in `stop()`, after the one synchronize that ends the call. It never stops generation: it
    answers with a cached all-False tensor of the rows' shape.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.started = 0.0
        self.first: float | None = None
        self.steps = 0
        self._events: tuple[Any, Any] | None = None
        self._never: dict[tuple[int, torch.device], torch.Tensor] = {}

    def start(self) -> None:
        """Wait for the device (earlier work is not this call's), then start both clocks."""
        synchronize(self.device)
        self.first, self.steps = None, 0
        if self.cuda:
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            self._events[0].record(torch.cuda.current_stream(self.device))
        self.started = time.perf_counter()

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        self.steps += 1
        if self.steps == 1:
            if self._events is not None:
                self._events[1].record(torch.cuda.current_stream(self.device))
            else:
                self.first = time.perf_counter()
        key = (input_ids.shape[0], input_ids.device)
        if key not in self._never:
            self._never[key] = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        return self._never[key]

    def stop(self) -> tuple[float, float | None]:
        """Wait for the device once; the call's seconds and its time to first token (None if no step ran)."""
        synchronize(self.device)
        seconds = time.perf_counter() - self.started
        return seconds, self.ttft_s

    @property
    def ttft_s(self) -> float | None:
        """Seconds from `start()` to the first token; on CUDA only valid after `stop()`."""
        if self.steps == 0:
            return None
        if self._events is not None:
            return self._events[0].elapsed_time(self._events[1]) / 1000
        return self.first - self.started


def synchronize(device: torch.device) -> None:
    """Wait for the device, so host clocks cover the device's work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def spread(values: list[float | None]) -> dict[str, Any]:
    """`{"median", "min", "max", "values"}`, as the summary reports every timed figure."""
    clean = [v for v in values if v is not None]
    if not clean:
        return {"median": None, "min": None, "max": None, "values": values}
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean), "values": values}


def noisy(name: str, figure: dict[str, Any]) -> str | None:
    """A warning when a figure moved too much between repeats to be compared with another cell's."""
    median = figure.get("median")
    if not median or len(figure["values"]) < 2:
        return None
    relative = (figure["max"] - figure["min"]) / median
    if relative > NOISY_SPREAD:
        return f"{name} spread {relative:.0%} of its median over {len(figure['values'])} repeats: too wide to trust"
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process (the cell runs in a process of its own; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_gpu_memory_mb(device: torch.device) -> tuple[float | None, float | None]:
    """Peak CUDA memory allocated and reserved since the timed passes began (None, None off CUDA)."""
    if device.type != "cuda":
        return None, None
    return torch.cuda.max_memory_allocated(device) / 2**20, torch.cuda.max_memory_reserved(device) / 2**20


def reset_peak_gpu_memory(device: torch.device) -> None:
    """Start CUDA's peak memory over, so the peak reported is the timed passes' own (not load or compile)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
