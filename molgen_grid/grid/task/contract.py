"""The task contract: what the engine hands a study's code for one cell, and what it takes back.

A task is a callable `task(cfg, cell)`. `cfg` is the cell's resolved config (the study's own keys: no `hydra`,
no `grid`); `cell` is a `CellHandle`: the CPUs and devices the cell may use, its own directory for files of its
own, a give-up hook, and a way to name the input files whose content its result depends on. The task returns
any JSON-serialisable mapping: its figures, as the summary will hold them (a NumPy scalar or 0-d array counts as
the number it holds). One form is reserved: `{"status": "unsupported", "reason": "..."}`, a combination that
cannot run there (a result of the study, done, never rerun). `status` may also be "ok" (the default when absent);
`provenance` (a mapping) is merged into the engine's own; every other key the engine writes (SUMMARY_KEYS) is
refused, so a study can never overwrite what identifies its cell. What the contract refuses is kept beside the
error (`returned.pkl`), never thrown away.
docs/tasks.md is the user's page for this contract.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn, Optional

OK, UNSUPPORTED = "ok", "unsupported"
#: The summary's keys that the engine writes for every study (DESIGN.md, section 2).
SUMMARY_KEYS = ("experiment", "cell", "status", "reason", "axes", "overrides", "config", "config_hash",
               "fingerprint", "provenance", "started_at", "finished_at", "attempt")
#: The keys that make a summary complete: a file without one of them is no summary (corrupt).
REQUIRED_KEYS = ("experiment", "cell", "status", "axes", "config", "config_hash", "fingerprint", "provenance")
#: Where a refused result is kept in the cell's directory: pickled, or its repr when it cannot be pickled.
RETURNED, RETURNED_REPR = "returned.pkl", "returned.txt"


class ResultError(ValueError):
    """A task returned something the engine cannot store as a summary."""


@dataclass
class CellHandle:
    """What a task may use of its cell. Built by the engine in the cell's own process; a test or a notebook
    builds one with a directory of its own (`CellHandle(name="x", experiment="x", dir=tmp)`)."""

    name: str
    experiment: str
    #: The cell's directory: a task writes its own files here (the engine retires them with the summary
    #: when the cell is rerun, and makes them durable before the summary that marks the cell done).
    dir: Path
    #: The CPUs and accelerator devices (their ids, as CUDA_VISIBLE_DEVICES lists them) it may use.
    cpus: int = 1
    devices: list[str] = field(default_factory=list)
    #: The engine's `give_up(reason, detail)`: record the cell as unsupported and end its process, from any
    #: thread (a watchdog that saw a hang). None outside the engine.
    give_up: Optional[Callable[[str, str], NoReturn]] = None
    inputs: dict[str, list[str]] = field(default_factory=dict)

    def record_inputs(self, kind: str, *paths: str | Path) -> None:
        """Name files whose content this result depends on (a data file, a checkpoint's files): an edit of
        one stales the cell, and `--status` names it (`data: mols.smi`)."""
        listed = self.inputs.setdefault(kind, [])
        listed += [str(Path(p).resolve()) for p in paths if str(Path(p).resolve()) not in listed]

    def write_json(self, name: str, data: Any) -> Path:
        """A file of the task's own in the cell's directory, written whole or not at all."""
        from molgen_grid.grid.store import atomic_write_json  # the store is the engine's; the handle is light

        path = self.dir / name
        atomic_write_json(path, data)
        return path


def plain(value: Any) -> Any:
    """`value` with every NumPy scalar and 0-d array as the Python number (or bool, str) it holds, through
    mappings, lists and tuples: a figure computed with NumPy is a figure. Larger arrays are left to be refused.
    NumPy is recognised by module, not imported: the engine starts fast and needs no NumPy of its own."""
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return plain(value.item())
    return value


def keep_returned(result: Any, directory: Path) -> Optional[str]:
    """Write what a task returned into its cell's directory, so that a refused result is kept (hours of
    figures): pickled, or its repr when it cannot be; the file's name, or None when neither could be written."""
    from molgen_grid.grid.store import atomic_write_text, write_pickle  # the store is the engine's

    try:
        write_pickle(directory / RETURNED, result)
        return RETURNED
    except Exception:  # noqa: BLE001 - a pickler refuses with any of several classes: the repr is the fallback
        pass
    try:
        atomic_write_text(directory / RETURNED_REPR, repr(result) + "\n")
        return RETURNED_REPR
    except Exception:  # noqa: BLE001 - a repr of the study's own that fails: the error alone is recorded
        return None


def read_result(result: Any, origin: str,
                keep_in: Optional[Path] = None) -> tuple[str, Optional[str], dict[str, Any]]:
    """(status, reason, figures) of what a task returned, or ResultError naming what breaks the contract and,
    with `keep_in` (the cell's directory), the file there that keeps what the task returned."""
    try:
        return _checked(result, origin)
    except ResultError as refused:
        kept = keep_returned(result, keep_in) if keep_in is not None else None
        if kept is None:
            raise
        raise ResultError(f"{refused}; what it returned is kept in {kept}") from None


def _checked(result: Any, origin: str) -> tuple[str, Optional[str], dict[str, Any]]:
    if not isinstance(result, Mapping):
        raise ResultError(f"{origin} returned {type(result).__name__}, not a mapping: return a dict of figures "
                          "(docs/tasks.md)")
    figures = plain(result)
    status = figures.pop("status", OK)
    reason = figures.pop("reason", None)
    if status not in (OK, UNSUPPORTED):
        raise ResultError(f"{origin} returned status {status!r}: 'ok' or 'unsupported' (with a reason)")
    if status == UNSUPPORTED and not isinstance(reason, str):
        raise ResultError(f"{origin} returned status 'unsupported' without a reason: add reason='...'")
    taken = sorted(k for k in figures if k in SUMMARY_KEYS and k != "provenance")
    if taken:
        raise ResultError(f"{origin} returned {', '.join(map(repr, taken))}, which the engine writes: rename "
                          "them")
    if "provenance" in figures and not isinstance(figures["provenance"], Mapping):
        raise ResultError(f"{origin} returned a provenance that is not a mapping")
    try:
        json.dumps(figures, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ResultError(f"{origin} returned something JSON cannot hold ({exc}): return numbers, strings, "
                          "lists and dicts") from None
    return status, reason, figures
