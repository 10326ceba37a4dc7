"""The resource keys of a `gpu` option (how and where a cell runs) and the values each may take.

These are the engine's own settings (the executors read them), checked like the benchmark's settings when a
grid is planned, so `gpu.time_min=0` is refused in one line before anything is submitted.
"""
from __future__ import annotations

import math
from typing import Any


def _positive(value: Any, integer: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    return math.isfinite(value) and value > 0


RULES = {
    "gpu.time_min": (lambda v: _positive(v, True), "a positive integer (minutes)"),
    "gpu.timeout_min": (lambda v: _positive(v, False), "a positive number (minutes)"),
    "gpu.mem_gb": (lambda v: _positive(v, False), "a positive number (GB)"),
    "gpu.cpus_per_task": (lambda v: _positive(v, True), "a positive integer"),
    "gpu.executor": (lambda v: isinstance(v, str) and bool(v), "the name of an executor of grid.executors"),
}


def check_resource(key: str, value: Any) -> str | None:
    """What a resource key takes, when `value` is not one of those; None when it is (or it has no rule)."""
    rule = RULES.get(key)
    if rule is None or rule[0](value):
        return None
    return f"{key}={value!r} is not allowed: {key} takes {rule[1]}"
