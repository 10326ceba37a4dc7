"""A command as a cell's task: the NWOR scripts' shape (a script that takes its settings as flags and writes
one JSON file) run by the engine, with the engine's guarantees.

`grid.command` is a list (no shell: each element one argument, interpolated against the cell's config), run in
the cell's directory with the cell's CPUs and devices in its environment. Its stdout and stderr go to the cell's
log, whatever bytes they carry; the JSON file it writes (`grid.command_result`, a path inside the cell's
directory) becomes the summary's figures; a non-zero exit fails the cell with the end of its stderr. The command
runs in a process group of its own, which is ended with the cell: an interrupt (SIGTERM, then SIGKILL after a
grace period), a requeue under Slurm, or the death of the cell's process (the kernel kills it then). Slurm's
warning signal (USR2) is the cell's to take, not the command's: the cell requeues, the command is ended.
"""
from __future__ import annotations

import codecs
import collections
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from molgen_grid.errors import InputError
from molgen_grid.grid.store import BOOKKEEPING, ERROR, SUMMARY
from molgen_grid.grid.task.base import Composed
from molgen_grid.grid.task.contract import CellHandle
from molgen_grid.grid.task.study import StudyConfig, cell_config

#: How many lines of the command's stderr a failure quotes.
STDERR_TAIL = 20
#: How long an ended command may take to exit after SIGTERM before it is killed.
STOP_GRACE_S = 10.0
#: The most bytes of stderr read at once: a line without end never grows without bound in memory.
READ_CHUNK = 65536
#: The most characters of one stderr line a failure quotes (a megabyte of binary is no message).
LINE_CHARS = 300
_PR_SET_PDEATHSIG = 1


class CommandFailed(RuntimeError):
    """The command exited non-zero, or wrote no result."""


def _child_setup() -> None:
    """In the command's process, before it starts: it dies with the cell's process, and leaves Slurm's
    requeue warning to it."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the cell's own ending still ends the group


def _pump(stream: Any, tail: collections.deque) -> None:
    """The command's stderr, to the cell's log as it comes, its last lines kept for a failure's message. Read
    as bytes and shown with U+FFFD for what is not UTF-8, and drained whatever the log does: a reader that
    stopped would leave the command blocked on a full pipe until its time limit."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for chunk in iter(lambda: stream.readline(READ_CHUNK), b""):
        text = decoder.decode(chunk)
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # the log is gone: keep draining, the failure's message still has the tail
        tail.append(text.rstrip("\n")[-LINE_CHARS:])


def _end(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def shown(argv: Sequence[str]) -> str:
    """The command as a reader names it: its program and, for an interpreter, the script (`python bench.py`)."""
    return " ".join(os.path.basename(a) for a in argv[:2] if not a.startswith("-")) or argv[0]


def result_in_cell(name: str) -> str:
    """`grid.command_result` as a path relative to the cell's directory, or InputError: the file is unlinked
    before the command runs, so a path outside the cell, or one of the engine's own files in it, would lose a
    file that is not the command's to write."""
    normal = os.path.normpath(name)
    head = normal.split(os.sep)[0]
    why = "is not a file inside the cell's directory" if os.path.isabs(name) or head in (os.curdir, os.pardir) else \
        "is a file the engine keeps in the cell's directory" if head in BOOKKEEPING | {SUMMARY, ERROR} else None
    if why is not None:
        raise InputError(f"grid.command_result={name!r} {why}: name the file the command writes, relative to the "
                         "cell's directory it runs in (grid.command_result=result.json)")
    return normal


def run_command(argv: Sequence[str], result_name: str, cell: CellHandle) -> dict[str, Any]:
    """Run the cell's command in its directory; its result file's figures."""
    env = {**os.environ, "MOLGEN_GRID_CELL_DIR": str(cell.dir), "MOLGEN_GRID_CPUS": str(cell.cpus)}
    result = cell.dir / result_in_cell(result_name)
    result.unlink(missing_ok=True)
    print(f"molgen-grid: running {' '.join(argv)} in {cell.dir}", flush=True)
    tail: collections.deque = collections.deque(maxlen=STDERR_TAIL)
    try:
        process = subprocess.Popen(list(argv), cwd=cell.dir, env=env, stdin=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True,
                                   preexec_fn=_child_setup)
    except OSError as exc:
        raise CommandFailed(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
    pump = threading.Thread(target=_pump, args=(process.stderr, tail), name="command-stderr", daemon=True)
    pump.start()
    try:
        code = process.wait()
    finally:
        _end(process)
    pump.join(timeout=5)
    if code != 0:
        said = " | ".join(line for line in list(tail)[-3:] if line.strip()) or "nothing on stderr"
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        raise CommandFailed(f"{shown(argv)} ended with {how}: {said}")
    try:
        figures = json.loads(result.read_text())
    except OSError:
        raise CommandFailed(f"{shown(argv)} exited 0 but wrote no {result_name} in the cell's directory "
                            "(grid.command_result names the file it writes)") from None
    except ValueError as exc:
        raise CommandFailed(f"{result_name} is not JSON: {exc}") from None
    return figures


def command_line(full: DictConfig, settings: DictConfig) -> list[str]:
    """A command cell's arguments, each interpolated against the cell's config (the engine's settings, defaults
    included, under `grid`: `${grid.command_result}` resolves)."""
    with open_dict(full):
        full.grid = settings
    return [str(a) for a in OmegaConf.to_container(full.grid.command, resolve=True)]


@dataclass
class CommandWork:
    """A command as a cell's work (`grid.command`)."""

    study: StudyConfig
    _argv: list[str] = field(default_factory=list, init=False, repr=False)
    _result: str = field(default="", init=False, repr=False)

    def compose(self, cell_dir: Path) -> Composed:
        full, settings, config_part = self.study.compose()
        config = cell_config(full)
        self._argv, self._result = command_line(full, settings), settings.command_result
        return Composed(config, self.study.fingerprint(settings, config_part), f"the command {shown(self._argv)}")

    def run(self, cell: CellHandle) -> Mapping[str, Any]:
        return run_command(self._argv, self._result, cell)

    def failed(self, exc: BaseException, cell_dir: Path) -> None:
        """Nothing beyond the error record (the command's stderr is in the cell's log)."""
