"""Cell names: a pure, reversible function of a cell's configuration.

A name lists the option of every axis group (in the configured order) and then every other override whose
value differs from the experiment's default, sorted by key, as Hydra's `override_dirname` does
(`key=value` joined by `,`). So the same cell gets the same directory however the user typed it, and
`--force NAME` can rebuild the overrides of a cell that never ran. Values that are not filesystem-safe or are
long are replaced by a short hash; such a name is still unique but resolves only through the grid.
"""
from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from hydra.errors import HydraException

MAX_NAME_BYTES = 200
#: The name of the cell with no override and no axis: a study's one default configuration.
DEFAULT_CELL = "default"
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:@+-]{1,48}$")
_HASH_MARK = "~"


def short_hash(text: str, length: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Cell:
    """One cell of a grid: its axis choices, its other (non-default) overrides and its name.

    `run` holds the overrides that only say how the cell is run (a time limit, memory): applied, never part of
    its name or fingerprint. `added` names the keys of `extra` that the cell's own options do not have (a key
    of another option of a swept group): they are applied with `++`, which adds a key.
    """

    axes: tuple[tuple[str, str], ...]
    extra: tuple[tuple[str, str], ...]
    name: str = field(compare=False)
    run: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    added: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def overrides(self) -> list[str]:
        """The Hydra overrides that reproduce this cell on top of its experiment."""
        return [f"{k}={v}" for k, v in self.axes] + [f"{'++' if k in self.added else ''}{k}={v}"
                                                     for k, v in self.extra]

    @property
    def run_overrides(self) -> list[str]:
        """The overrides of how it is run, each added or replaced (`++`) whatever its options hold."""
        return [f"++{k}={v}" for k, v in self.run]

    @property
    def axis_choices(self) -> dict[str, str]:
        return dict(self.axes)


def _name_value(value: str) -> str:
    return value if _SAFE_VALUE.match(value) else _HASH_MARK + short_hash(value)


@functools.lru_cache(maxsize=65536)
def _name_part(key: str, value: str) -> str:
    """`key=value` as a name writes it (a grid's cells share each part: made once)."""
    return f"{name_key(key)}={_name_value(value)}"


def name_key(key: str) -> str:
    """A key as a name writes it: a nested group (`db/engine`) by its package (`db.engine`), as a directory name
    holds no `/`; the override reader reads it back as the group."""
    return key.replace("/", ".")


def make_cell(axes: list[tuple[str, str]], extra: dict[str, str], run: dict[str, str] | None = None,
              added: frozenset[str] = frozenset()) -> Cell:
    """Build a cell from its axis choices (in axis order), its non-default overrides and how it is run."""
    own = tuple(sorted(extra.items()))
    name = ",".join([_name_part(k, v) for k, v in (*axes, *own)]) or DEFAULT_CELL
    if len(name.encode()) > MAX_NAME_BYTES:
        name = name[: MAX_NAME_BYTES - 12] + _HASH_MARK + short_hash(name)
    return Cell(axes=tuple(axes), extra=own, name=name, run=tuple(sorted(run.items())) if run else (),
                added=frozenset(added & extra.keys()) if added else frozenset())


def parse_cell_name(name: str) -> list[str]:
    """Turn a cell name back into the overrides that reproduce it.

    Raises ValueError for a name whose values were shortened to a hash: only the grid that made it knows them.
    """
    if name == DEFAULT_CELL:
        return []
    if _HASH_MARK in name:
        raise ValueError(f"cell name {name!r} holds hashed values and can only be matched against its grid")
    overrides = []
    for part in name.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{name!r} is not a cell name (expected key=value,key=value,...)")
        overrides.append(f"{key}={value}")
    return overrides


def canonical(value: Any, reads_back: Callable[[str, Any], bool]) -> str:
    """One spelling per value, as a name and an override write it: 0.40 and 0.4 are `0.4`, True and true are
    `true`; a string that would read back as another type is quoted. `reads_back(text, value)` tells whether
    Hydra reads `text` as `value`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical(v, reads_back) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{canonical(v, reads_back)}" for k, v in value.items()) + "}"
    text = str(value)
    if reads_back(text, value):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


#: What a text that Hydra cannot read as a value reads back as.
_UNREADABLE = object()


class ValueSpelling:
    """Whether Hydra reads a text back as a given value (`canonical`'s question), asked once per text."""

    def __init__(self, parser: Any) -> None:
        self._parser = parser
        self._read: dict[str, Any] = {}

    def value_of(self, text: str) -> Any:
        """The value Hydra reads `text` as, in an override (`_UNREADABLE` when it reads none)."""
        if text not in self._read:
            try:
                self._read[text] = self._parser.parse_override(f"k={text}").value()
            except HydraException:
                self._read[text] = _UNREADABLE
        return self._read[text]

    def reads_back(self, text: str, value: Any) -> bool:
        back = self.value_of(text)
        return type(back) is type(value) and back == value


def name_matches(name: str, settings: Callable[[dict[str, str]], dict[str, str]]) -> bool:
    """Whether a name typed by a user (`--force`, `hydra.launcher.force`) selects a cell: every `key=value` part
    of it is the cell's value of that key. `settings(wanted)` gives the cell's value of each wanted key, as a name
    writes it (its default where the name leaves the key out)."""
    wanted = dict(part.partition("=")[::2] for part in name.split(","))
    return settings(wanted) == wanted
