"""Code named in the config by its dotted path (`grid.task`, `grid.preflight`, `grid.executors`, ...): the seam
between the engine and the code it runs, which the engine never imports by name."""
from __future__ import annotations

import importlib
from typing import Any


def load(path: str) -> Any:
    """The object at `package.module.name`."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)
