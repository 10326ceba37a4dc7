"""Cheap checks of a cell's inputs before anything is launched (no torch, no model loading)."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from molgen_grid.bench.data import load_molecules
from molgen_grid.errors import InputError


@functools.lru_cache(maxsize=64)
def _check_data(path: str, column: str) -> None:
    load_molecules(path, column)


def check_inputs(cfg: Any) -> None:
    """Raise InputError (one line: the problem and the fix) for a missing or empty data file or model."""
    _check_data(str(cfg.data.path), str(cfg.data.column))
    for key in ("path", "tokenizer_path"):
        value = cfg.model.get(key)
        if value is None:
            continue
        path = Path(str(value)).expanduser()
        if not path.is_dir():
            raise InputError(f"model.{key} {path} is not a directory: point it at a local Hugging Face checkpoint")
        if key == "path" and not (path / "config.json").is_file():
            raise InputError(f"model.path {path} has no config.json: point it at a Hugging Face checkpoint directory")
