"""Clocks and figures: time to first token, spread over repeats, the memory of this process."""
from __future__ import annotations

import resource
import statistics
import time
from typing import Any

import torch
from transformers import LogitsProcessor
from transformers.generation.streamers import BaseStreamer

#: Above this relative spread ((max - min) / median) a figure is flagged as too noisy to trust.
NOISY_SPREAD = 0.3


class FirstTokenClock(BaseStreamer):
    """Seconds from `start()` to the first generated token.

    generate() hands a streamer the prompt first, then each step's tokens, already copied to the host (so on
    CUDA the time includes the device's work). Beam search takes no streamer; there `logits_hook()` marks the
    first logits processor call instead (the prefill done, just before the first token is chosen).
    """

    def __init__(self) -> None:
        self.started = 0.0
        self.first: float | None = None
        self._puts = 0

    def start(self) -> None:
        self.started, self.first, self._puts = time.perf_counter(), None, 0

    def put(self, value: torch.Tensor) -> None:
        self._puts += 1
        if self._puts == 2:
            self.mark()

    def end(self) -> None:
        """Nothing to flush: only the time of the first token matters."""

    def mark(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    @property
    def seconds(self) -> float | None:
        return None if self.first is None else self.first - self.started

    def logits_hook(self) -> LogitsProcessor:
        clock = self

        class _Mark(LogitsProcessor):
            def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
                clock.mark()
                return scores

        return _Mark()


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
