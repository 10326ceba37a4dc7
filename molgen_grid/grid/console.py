"""The console every command prints through: rich, as wide as a terminal allows, quiet on a closed pipe.

rich ends a program whose reader closed the pipe with status 1; `molgen-grid --status | head` should end as
`git log | head` does, with status 0 and no word.
"""
from __future__ import annotations

import sys

from rich.console import Console

from molgen_grid.errors import closed_pipe


class GridConsole(Console):
    def on_broken_pipe(self) -> None:
        closed_pipe()


def make_console() -> GridConsole:
    return GridConsole(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 400)
