"""Cheap checks of a cell's inputs before anything is launched.

The engine calls this for every cell of a grid in its own process, so it imports neither torch nor
transformers (seconds each) and reads each data file once.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from molgen_grid.bench.data import invalid_rows, invalid_rows_warning
from molgen_grid.errors import InputError


@functools.lru_cache(maxsize=64)
def _check_data(path: str, column: str) -> str | None:
    file, invalid = invalid_rows(path, column)
    return invalid_rows_warning(file, invalid)


def _check_checkpoint(key: str, value: Any, needs: tuple[str, ...]) -> None:
    """`value` is a directory holding one of the files `needs` names."""
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        raise InputError(f"{key} {path} is not a directory: point it at a local Hugging Face checkpoint")
    if not any((path / name).is_file() for name in needs):
        raise InputError(f"{key} {path} has no {' or '.join(needs)}: point it at a Hugging Face checkpoint directory")


def check_inputs(cfg: Any) -> list[str]:
    """Raise InputError (one line: the problem and the fix) for a missing or empty data file or checkpoint;
    return warnings for the console (rows of the data file that are not molecules)."""
    warning = _check_data(str(cfg.data.path), str(cfg.data.get("column") or "smiles"))
    if cfg.model.get("path") is not None:
        _check_checkpoint("model.path", cfg.model.path, ("config.json",))
    tokenizer_path = cfg.model.get("tokenizer_path") or cfg.model.get("path")
    if tokenizer_path is not None:
        _check_checkpoint("model.tokenizer_path", tokenizer_path, ("tokenizer_config.json", "tokenizer.json"))
    if cfg.get("decoding") is not None and cfg.decoding.get("draft_path") is not None:
        _check_checkpoint("decoding.draft_path", cfg.decoding.draft_path, ("config.json",))
    return [warning] if warning else []
