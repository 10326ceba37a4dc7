"""What produced a cell's figures: the host, library versions and the device (the engine adds git and Slurm)."""
from __future__ import annotations

import platform
import socket

import rdkit
import torch
import transformers


def provenance(device: torch.device) -> dict[str, str | None]:
    cuda = device.type == "cuda"
    return {
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "rdkit": rdkit.__version__,
        "device": str(device),
        "gpu_name": torch.cuda.get_device_name(device) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
    }
