"""The light task: values computed at once from the cell's settings, or after a file appears."""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any


def run(cfg: Any, cell: Any) -> dict[str, Any]:
    time.sleep(cfg.seconds)
    if cfg.wait_for:
        print(f"light task: waiting for {cfg.wait_for}", flush=True)  # a line of the cell's own in its log
        while not Path(cfg.wait_for).exists():
            time.sleep(0.05)
    held = bytearray(int(cfg.memory_mb) * 2**20)
    for i in range(0, len(held), 4096):
        held[i] = 1
    if cfg.fail:
        raise RuntimeError(cfg.fail)
    if cfg.unsupported:
        return {"status": "unsupported", "reason": cfg.unsupported}
    if cfg.input:
        cell.record_inputs("data", cfg.input)
    values = [cfg.variant.factor * cfg.scale * (1 + cfg.spread * i) for i in range(int(cfg.count))]
    cell.write_json("values.json", values)
    return {"value": {"median": statistics.median(values), "min": min(values), "max": max(values),
                      "values": values},
            "count": int(cfg.count), "cpus": cell.cpus, "devices": cell.devices,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "warnings": (["one item only"] if int(cfg.count) == 1 else []) + ([cfg.warning] if cfg.warning else [])}
