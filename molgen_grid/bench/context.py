"""Where a cell's figures come from, in a few lines a report prints (the summary's `context`, grid.report.context).

A ratio measured on a 3M-parameter model on two shared CPU cores says nothing of a 380M model on an H100: a
report names the device and its kind, the dtype, the model's and the draft's sizes and the machine's load, each
read from the cell (the objects that ran, the load it measured), never typed by hand. Values are rounded so that
cells run alike read alike: the report lists each distinct value once.
"""
from __future__ import annotations

import os
import platform
from typing import Any

import torch

from molgen_grid.bench.machine import OTHER_CORES_WARNING

#: The line a CPU cell adds: its speed ratios are not a GPU's.
CPU_CAUTION = ("measured on a CPU: ratios between its cells do not transfer to a GPU (other kernels, other "
               "bottlenecks, no host-device synchronisation)")


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), or what the platform says where that cannot be read."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_context(device: torch.device) -> dict[str, str]:
    """The device and its kind (the GPU's name, or the CPU's model with the threads torch used), and, on a CPU,
    the caution that its ratios do not transfer to a GPU."""
    if device.type == "cuda":
        kind = torch.cuda.get_device_name(device)
        return {"device": str(device), "device kind": kind}
    return {"device": str(device),
            "device kind": f"{cpu_name()}, torch on {torch.get_num_threads()} of {os.cpu_count()} cores",
            "caution": CPU_CAUTION}


def parameters(model: Any) -> str:
    """A model's size: its parameters, in millions."""
    return f"{sum(p.numel() for p in model.parameters()) / 1e6:.3g}M parameters"


def load_context(load: dict[str, Any]) -> str:
    """The other processes' share of the machine during the cell (machine.competition's block): quiet under the
    share its warning starts at, else to the nearest half core, so that cells of one run mostly read alike."""
    other, cpus = load.get("other_cores"), load.get("cpus")
    if other is None:
        text = "unknown (no /proc/stat)"
    elif other <= OTHER_CORES_WARNING:
        text = f"quiet: other processes kept under {OTHER_CORES_WARNING:g} of {cpus} cores busy"
    else:
        text = f"shared: other processes kept about {round(other * 2) / 2:g} of {cpus} cores busy"
    return text + (", other processes on the GPU" if load.get("gpu_other_processes") else "")


def cell_context(device: torch.device, cfg: Any, model: Any, model_size: str, draft: Any,
                 load: dict[str, Any]) -> dict[str, str]:
    """The summary's `context`: the device's lines, the dtype, the model (its path or `embedded`, architecture
    and size as loaded, before any quantization), the draft's, the machine's load."""
    draft_name = cfg.decoding.get("draft_path") or "embedded draft"
    return {**device_context(device), "dtype": str(model.dtype).removeprefix("torch."),
            "model": f"{cfg.model.path or 'embedded'} ({model.config.model_type}), {model_size}",
            "draft": "none" if draft is None else f"{draft_name} ({draft.config.model_type}), {parameters(draft)}",
            "machine load": load_context(load)}
