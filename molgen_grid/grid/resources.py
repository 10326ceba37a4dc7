"""The resource keys of a resource group's option (how and where a cell runs) and the values each may take.

These are the engine's own settings (the executors read them), checked like a study's settings when a grid is
planned, and each option as its file writes it when its cells are about to launch, so a time limit of 0 or a
setup line given as one string (it would be run letter by letter) is refused in one line before anything is
claimed. A null value is the default: the cluster's, for a partition; no limit, for a local cell's time. The
group is the study's (`grid.resources`); the keys are the engine's.
"""
from __future__ import annotations

import math
from typing import Any

#: The executor of a resource option that names none: this machine.
LOCAL = "local"


def executor_of(resources: dict[str, Any]) -> str:
    """The name of the executor a cell's resources choose."""
    return str(resources.get("executor", LOCAL))


def _positive(value: Any, integer: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    return math.isfinite(value) and value > 0


RULES = {
    "time_min": (lambda v: _positive(v, True), "a positive integer (minutes): the cell's time limit"),
    "mem_gb": (lambda v: _positive(v, False), "a positive number (GB)"),
    "cpus_per_task": (lambda v: _positive(v, True), "a positive integer"),
    "executor": (lambda v: isinstance(v, str) and bool(v), "the name of an executor of grid.executors"),
    "setup": (lambda v: isinstance(v, list) and all(isinstance(line, str) for line in v),
              "a list of shell lines (run before the job)"),
    "additional": (lambda v: isinstance(v, dict), "a mapping of sbatch parameters (their long names, without --)"),
}


def check_resource(key: str, value: Any, group: str | None) -> str | None:
    """What a resource key takes, when `value` is not one of those; None when it is (or it has no rule)."""
    if group is None or not key.startswith(group + "."):
        return None
    rule = RULES.get(key[len(group) + 1:])
    if rule is None or rule[0](value):
        return None
    return f"{key}={value!r} is not allowed: {key} takes {rule[1]}"


def option_problem(label: str, option: dict[str, Any]) -> str | None:
    """Why the resource option `label` (`where=h100`) cannot be launched as written; None when it can."""
    for key, value in option.items():
        rule = RULES.get(key)
        if value is not None and rule is not None and not rule[0](value):
            return f"{label} sets {key}={value!r}: {key} takes {rule[1]}"
    return None
