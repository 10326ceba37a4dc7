"""`--accept`: keep stale results as they are, recording the current fingerprint (as Snakemake's `--touch`).

A stale cell's result was made by a config, code, inputs or libraries that have changed since. When the change
cannot matter (a key the task never reads, a refactor the fingerprint cannot see through), rerunning hours of work
is waste: accepting records the fingerprint as it is now, so the cell reads done, and says per cell which parts
it accepted and what changed. The summary as it was is kept in the cell's history/, and the summary says what was
accepted and when; what the cell ran (its config) is left as recorded.
"""
from __future__ import annotations

import getpass
import time
from typing import Any, Callable

from molgen_grid.grid.fingerprint import PARTS, Current
from molgen_grid.grid.plan import Entry
from molgen_grid.grid.state import STALE, Note
from molgen_grid.grid.store import SUMMARY, atomic_write_json


def fingerprint_now(entry: Entry, current: Current, recorded: dict[str, Any]) -> dict[str, Any]:
    """The cell's fingerprint as a run now would record it (an input this host cannot read keeps its hash)."""
    inputs = {kind: {path: current.hashes.of(path) or digest for path, digest in files.items()}
              for kind, files in (recorded.get("inputs") or {}).items()}
    return {"config": entry.config_part, "code": current.code, "inputs": inputs, "libraries": current.libraries}


def accept_cell(entry: Entry, current: Current) -> str:
    """Record the current fingerprint of one stale cell under its lock; what was accepted, in words."""
    store = entry.store
    with store.locked() as got:
        if not got:
            return "busy: another process holds its lock; nothing changed"
        summary = store.summary()
        why = current.stale(summary.get("fingerprint") if summary else None, entry.config_part)
        if summary is None or why is None or isinstance(why, Note):
            return "not stale any more; nothing changed"
        recorded = summary.get("fingerprint") if isinstance(summary.get("fingerprint"), dict) else {}
        now = fingerprint_now(entry, current, recorded)
        parts = [part for part in PARTS if recorded.get(part) != now[part]]
        kept = store.history_folder(".accepted")
        atomic_write_json(kept / SUMMARY, summary)
        accepted = {"at": time.time(), "by": getpass.getuser(), "parts": parts, "reason": why}
        atomic_write_json(store.path(SUMMARY), {**summary, "fingerprint": now,
                                                "accepted": [*summary.get("accepted", []), accepted]}, durable=True)
        return f"accepted {', '.join(parts)} ({why}); the former summary is in {kept.relative_to(store.dir)}"


def accept(entries: list[Entry], current: Current, named: bool, say: Callable[[str], None]) -> int:
    """Accept every stale cell of `entries`; a cell named on the command line that is not stale is said so.
    Returns how many were accepted."""
    count = 0
    for entry in entries:
        if entry.state.state != STALE:
            if named:
                say(f"{entry.cell.name}: {entry.state.state}, not stale: nothing to accept")
            continue
        line = accept_cell(entry, current)
        count += line.startswith("accepted")
        say(f"{entry.cell.name}: {line}")
    return count
