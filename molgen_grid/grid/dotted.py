"""Dotted paths in the config: the code the engine runs (`grid.task`, `grid.preflight`, `grid.executors`, ...),
which it never imports by name, and the fields of summary.json it shows (`grid.report.*`), whose meaning it never
knows: the seam between the engine and the benchmark."""
from __future__ import annotations

import importlib
from typing import Any


def load(path: str) -> Any:
    """The object at `package.module.name`."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def value_at(tree: Any, path: str) -> Any:
    """The value at `a.b.c` in nested dicts; None where any part is missing."""
    for part in path.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree
