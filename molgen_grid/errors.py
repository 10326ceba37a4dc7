"""The one exception both halves raise for bad user input, and how the front doors show it.

Its message is shown to the user as a single line, so it names the problem and the fix; the front door
turns it into a non-zero exit before anything in the results tree is touched.
"""
from __future__ import annotations

import sys
from typing import NoReturn


class InputError(Exception):
    """Bad user input: an unknown option, a missing file, a path that escapes the results tree."""


def fail(message: str) -> NoReturn:
    """One line on stderr, whitespace folded, and exit status 2."""
    print(f"molgen-grid: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)
