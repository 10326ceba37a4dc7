"""A config as the fingerprint keeps it: key by key, so that staleness names the key that changed.

A config is flattened to `{dotted.key: value}`, each value as JSON text (lists whole, interpolations as written:
`${model.size}` stays itself, so an edit shows at the key that was edited, and `${now:...}` or a path resolved
on another host changes nothing). Keys that only say how a cell is run (`grid.not_identity`), Hydra's and the
engine's sections are left out: they stale nothing.
"""
from __future__ import annotations

import copy
import json
from typing import Any, Iterable, Mapping

#: Sections of a config that are not the cell's config: Hydra's, the engine's, the defaults list.
NOT_CELL_SECTIONS = ("hydra", "grid", "defaults")
#: How long a value may be in a reason before it is only said to have changed.
SHOWN_VALUE_CHARS = 40


def leaf(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def flat_keys(container: Any, prefix: str = "") -> dict[str, str]:
    """`{dotted.key: JSON text}` of a plain container (OmegaConf.to_container's); an empty mapping is a value."""
    if not isinstance(container, Mapping) or (not container and prefix):
        return {prefix: leaf(container)} if prefix else {}
    out: dict[str, str] = {}
    for key, value in container.items():
        out.update(flat_keys(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def merge_tree(into: dict, other: Mapping) -> None:
    """Merge a plain config into another as OmegaConf merges them: mappings key by key, anything else (a list,
    a value, null) replacing what was there."""
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            merge_tree(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def merge_keys(into: dict[str, str], keys: Mapping[str, str]) -> None:
    """Merge flat keys (a cell's overrides) as OmegaConf updates a config: a value replaces what was under its
    key and a key under a former value replaces that value."""
    for key, value in keys.items():
        if key not in into:
            for other in [k for k in into if k.startswith(key + ".")]:
                del into[other]
            parts = key.split(".")
            for i in range(1, len(parts)):
                into.pop(".".join(parts[:i]), None)
        into[key] = value


def without(keys: dict[str, str], dropped: Iterable[str]) -> dict[str, str]:
    """The keys less every key at or under one of `dropped` (a section, a key that only says how a cell runs)."""
    dropped = tuple(dropped)
    return {k: v for k, v in keys.items()
            if not any(k == d or k.startswith(d + ".") for d in dropped)}


def _shown(value: str) -> str:
    return value if len(value) <= SHOWN_VALUE_CHARS else value[:SHOWN_VALUE_CHARS - 3] + "..."


def changed_keys(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The keys whose values differ (or that only one of them has), in name order. The items are compared as
    sets where the values allow (text, numbers): a stale cell's config differs in a key or two of hundreds, and
    a status checks thousands of them."""
    if before == now:
        return []
    if not before or not now:
        return sorted(now or before)
    try:
        return sorted({key for key, _ in before.items() ^ now.items()})
    except TypeError:  # a value that cannot be hashed (a list, a mapping)
        return sorted(k for k in set(before) | set(now) if k not in before or k not in now or before[k] != now[k])


def changes(before: Mapping[str, str], now: Mapping[str, str], keys: Iterable[str] | None = None) -> list[str]:
    """What changed from one config to another, key by key: `max_new_tokens 1536 -> 1024`, `new key x`,
    `x removed`; `keys`: said of these changed keys only (a reason names two)."""
    if before == now:
        return []
    out = []
    for key in changed_keys(before, now) if keys is None else keys:
        if key not in before:
            out.append(f"new key {key}")
        elif key not in now:
            out.append(f"{key} removed")
        elif before[key] != now[key]:
            out.append(f"{key} {_shown(before[key])} -> {_shown(now[key])}")
    return out
