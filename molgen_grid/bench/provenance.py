"""What produced a cell's figures: the host, library versions and the device (the engine adds git and Slurm)."""
from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess

import rdkit
import torch
import transformers

from molgen_grid.bench.versions import library_versions


def gpu_driver() -> str | None:
    """The NVIDIA driver's version (one per host: the first GPU's line), or None when nvidia-smi cannot say."""
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return None
    try:
        out = subprocess.run([nvidia_smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.strip().splitlines()
    return lines[0].strip() if lines and lines[0].strip() else None


def provenance(device: torch.device) -> dict[str, str | None]:
    cuda = device.type == "cuda"
    cudnn = torch.backends.cudnn.version() if cuda else None
    return {
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "rdkit": rdkit.__version__,
        "device": str(device),
        # What the cell's process was allowed to see (the launching shell's, for local cells).
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpu_name": torch.cuda.get_device_name(device) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "gpu_driver": gpu_driver() if cuda else None,
        "cudnn": None if cudnn is None else str(cudnn),
        "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(device))) if cuda else None,
        "flash_attn": library_versions()["flash-attn"],
    }
