"""Clocks and figures: time to first token, spread over repeats, the memory of this process."""
from __future__ import annotations

import resource
import statistics
import time
from typing import Any

import torch
from transformers import LogitsProcessor

#: Above this relative spread ((max - min) / median) a figure is flagged as too noisy to trust.
NOISY_SPREAD = 0.3


class FirstTokenClock:
    """One generate() call's wall time and time to first token, with no host sync per generated token.

    `logits_hook()` is a logits processor (generate() calls it at every step of every decoding mode); its first
    call after `start()` marks the first token's logits (the prefill done, just before the first token is
    chosen). On a CPU the mark is the host clock. On CUDA it records a timing event on the device's current
    stream, so it covers the device's work up to that point without waiting for it; both events are resolved
    once in `stop()`, after the one synchronize that ends the call.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.started = 0.0
        self.first: float | None = None
        self._marked = False
        self._events: tuple[Any, Any] | None = None

    def start(self) -> None:
        """Wait for the device (earlier work is not this call's), then start both clocks."""
        synchronize(self.device)
        self.first, self._marked = None, False
        if self.cuda:
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            self._events[0].record(torch.cuda.current_stream(self.device))
        self.started = time.perf_counter()

    def mark(self) -> None:
        if self._marked:
            return
        self._marked = True
        if self._events is not None:
            self._events[1].record(torch.cuda.current_stream(self.device))
        else:
            self.first = time.perf_counter()

    def stop(self) -> tuple[float, float | None]:
        """Wait for the device once; the call's seconds and its time to first token (None if never marked)."""
        synchronize(self.device)
        seconds = time.perf_counter() - self.started
        return seconds, self.seconds

    @property
    def seconds(self) -> float | None:
        """Seconds from `start()` to the first mark; on CUDA only valid after `stop()`."""
        if not self._marked:
            return None
        if self._events is not None:
            return self._events[0].elapsed_time(self._events[1]) / 1000
        return self.first - self.started

    def logits_hook(self) -> LogitsProcessor:
        return _FirstLogits(self)


class _FirstLogits(LogitsProcessor):
    """Marks its clock and hands the scores on unchanged (no device work, no sync)."""

    def __init__(self, clock: FirstTokenClock) -> None:
        self.clock = clock

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.clock.mark()
        return scores


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


def peak_gpu_mem_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20
