"""A Slurm cell's next request after its job ran out of memory or time: the same request would fail the same way.

After OUT_OF_MEMORY the next attempt asks for `mem_gb` times `grid.retry.grow.memory`, after TIMEOUT for
`time_min` times `grid.retry.grow.time`, counted from what the failed attempt asked (recorded in its line of
attempts.jsonl), so requests grow attempt after attempt; never less than the option asks now. A request is capped
at its partition's limit (MaxTime; MaxMemPerNode, else its nodes' memory), read once per plan with one
`scontrol show partition` and, when a partition sets no memory limit, one `sinfo` call. Any other failure asks
what the option asks.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from molgen_grid.grid.executors.slurm_status import _run

#: Slurm's word for the failure -> the request key that grows and its factor's name in `grid.retry.grow`.
GROWS = {"OUT_OF_MEMORY": ("mem_gb", "memory"), "TIMEOUT": ("time_min", "time")}
#: The key of the cluster's default partition (a cell that names none runs there).
DEFAULT = ""
_WORD = re.compile(r"^(OUT_OF_MEMORY|TIMEOUT)\b")


@dataclass(frozen=True)
class Limits:
    """What one partition grants a job at most (None: no limit)."""

    time_min: int | None = None
    mem_gb: float | None = None


def minutes(text: str) -> int | None:
    """Slurm's time as scontrol prints it (`UNLIMITED`, `30`, `2:00:00`, `1-00:00:00`) in whole minutes; None:
    no limit."""
    if text.upper() in ("UNLIMITED", "INFINITE", "NONE", ""):
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:  # days-hours[:minutes[:seconds]]
        parts += [0] * (3 - len(parts))
    else:  # minutes, minutes:seconds or hours:minutes:seconds
        parts = [0] * (3 - len(parts)) + parts if len(parts) > 1 else [0, parts[0], 0]
    hours, mins, _ = parts
    return int(days or 0) * 1440 + hours * 60 + mins


def partition_limits() -> dict[str, Limits]:
    """Every partition's limits, by name (and DEFAULT for the default one), from one `scontrol show partition`;
    the nodes' memory from one `sinfo` where a partition sets no MaxMemPerNode. Empty when Slurm does not say."""
    shown = _run(["scontrol", "show", "partition", "-o"]) or ""
    fields = [dict(word.split("=", 1) for word in line.split() if "=" in word) for line in shown.splitlines()]
    memory: dict[str, float] = {}
    if any(f.get("MaxMemPerNode", "UNLIMITED") == "UNLIMITED" for f in fields):
        for line in (_run(["sinfo", "-h", "-o", "%R|%m"]) or "").splitlines():
            name, _, mb = line.partition("|")
            if mb.rstrip("+").isdigit():
                memory[name] = max(memory.get(name, 0.0), int(mb.rstrip("+")) / 1024)
    limits = {}
    for f in fields:
        name = f.get("PartitionName", "")
        cap = f.get("MaxMemPerNode", "UNLIMITED")
        limits[name] = Limits(minutes(f.get("MaxTime", "UNLIMITED")),
                              int(cap) / 1024 if cap.isdigit() else memory.get(name))
        if f.get("Default") == "YES":
            limits[DEFAULT] = limits[name]
    return limits


def failure_word(reason: str | None) -> str | None:
    """OUT_OF_MEMORY or TIMEOUT when a failed cell's reason starts with it (the Slurm view's failed reasons
    start with the job's state word), else None."""
    match = _WORD.match(reason or "")
    return match.group(1) if match else None


def _shown(value: float) -> str:
    return f"{value:g}"


@dataclass
class Growth:
    """The factors of `grid.retry.grow`, and the partitions' limits read at most once (per plan)."""

    factors: dict[str, float]
    _limits: dict[str, Limits] | None = field(default=None, repr=False)

    def limits(self, partition: str | None) -> Limits:
        if self._limits is None:
            self._limits = partition_limits()
        return self._limits.get(partition or DEFAULT, Limits())

    def request(self, option: dict[str, Any], asked: dict[str, float], reason: str | None,
                before: dict) -> tuple[dict[str, Any], str | None]:
        """The option with its grown key, and what grew and why (`time_min 1 -> 2 after TIMEOUT`), or the
        option as it is and None. `asked`: the option's request as sbatch gets it (its defaults filled in);
        `before`: the failed attempt's line, with what it asked when it recorded that."""
        word = failure_word(reason)
        if word is None:
            return option, None
        key, factor = GROWS[word]
        last = float(before.get(key) or asked[key])
        wanted = max(asked[key], last * float(self.factors[factor]))
        partition = option.get("partition")
        limit = getattr(self.limits(None if partition is None else str(partition)), key)
        value = wanted if limit is None else min(wanted, limit)
        value = math.ceil(value) if key == "time_min" else value
        note = f"{key} {_shown(last)} -> {_shown(value)} after {word}"
        if value < wanted:
            note += f" (capped at partition {partition or '(the default)'}'s limit of {_shown(limit)})"
        return {**option, key: value}, note
