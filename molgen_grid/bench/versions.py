"""The library versions a cell's figures depend on, read without importing them (`grid.versions`).

The engine compares them for every done cell of a status over thousands of cells, so this must answer in
milliseconds: versions come from the installed packages' metadata, and torch's CUDA version from its
`version.py` as text (importing torch takes seconds).
"""
from __future__ import annotations

import importlib.util
import re
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "transformers", "tokenizers", "rdkit", "flash-attn")


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def torch_cuda() -> str | None:
    """The CUDA version torch was built for (None for a CPU build), from torch/version.py."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text()
    except OSError:
        return None
    match = re.search(r"^cuda(?:\s*:\s*[^=]+)?\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    return match.group(1) if match else None


def library_versions() -> dict[str, str | None]:
    return {**{name: _installed(name) for name in LIBRARIES}, "cuda": torch_cuda()}
