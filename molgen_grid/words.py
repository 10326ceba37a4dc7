"""Counts in sentences people read: `1 cell`, `2 cells`; shared by the engine and the benchmark."""
from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`count` and the noun, singular for exactly one."""
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"
