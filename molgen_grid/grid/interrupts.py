"""How a cell's process is stopped, and how its ending is named: Ctrl-C, SIGTERM, SIGHUP, its sweep's death, errors.

A local cell's process ends when its sweep ends (a killed sweep leaves no orphan benchmark behind), and takes
Ctrl-C, SIGTERM or SIGHUP (the terminal of a dropped SSH session hangs up its whole process group) as an interrupt
that is recorded as such (`interrupted`, rerun next time), whatever exception a library then turns the interrupt
into. Every other exception is a failure with its class, message and
traceback tail, in one record (error.json) that names the attempt it ends.
"""
from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from typing import Any

from molgen_grid.errors import STOP_SIGNALS, Interrupted

#: The stop signal (Ctrl-C, SIGTERM, SIGHUP) this cell's process took, if any (see `interruption`).
_stop_signal: list[int] = []


def failure_reason(exc: BaseException) -> str:
    """One line for the status table. A job that submitit did not requeue after its time-limit signal (no
    requeues left) ends here before Slurm would call it TIMEOUT, so it is named TIMEOUT."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    # submitit's errors end with what happened; Python's (an OmegaConf key error: key, then details) begin so
    message = (lines[-1] if type(exc).__module__.startswith("submitit") else lines[0]) if lines else ""
    if type(exc).__name__ == "UncompletedJobError" and "timed-out" in message:
        return f"TIMEOUT: {message}"
    stopped = interruption(exc)
    if stopped is not None:
        return stopped
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def interruption(exc: BaseException) -> str | None:
    """"interrupted by SIG...", or None when the attempt failed on its own. A stop signal this process took
    counts whatever exception then ended it: a library may turn the interrupt raised inside it into an error
    of its own (an import of transformers cut by Ctrl-C surfaces as ModuleNotFoundError)."""
    if _stop_signal:
        return f"interrupted by {signal.Signals(_stop_signal[0]).name}"
    if isinstance(exc, Interrupted):
        return f"interrupted by {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by SIGINT"
    return None


def error_record(exc: BaseException, attempt: str | None = None) -> dict[str, Any]:
    """The error record of an attempt that ended with `exc` (error.json)."""
    return {
        "attempt": attempt,
        "when": time.time(),
        "class": type(exc).__name__,
        "message": str(exc),
        "reason": failure_reason(exc),
        "interrupted": interruption(exc) is not None,
        "traceback": traceback.format_exception(exc)[-12:],
    }


def end_with_owner(pid: int, every_s: float = 1.0) -> None:
    """Exit this process (no outcome written: the cell reads as killed) once process `pid` has ended."""
    def watch() -> None:
        while True:
            time.sleep(every_s)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(137)
            except PermissionError:
                continue

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


def interrupt_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP end a local cell with an `Interrupted` exception, so that it is recorded as
    such; a second signal (submitit's controller passes one on) must not break the recording, so it is ignored."""
    def handler(signum: int, frame: Any) -> None:
        for one in (signal.SIGINT, *STOP_SIGNALS):
            signal.signal(one, signal.SIG_IGN)
        _stop_signal.append(signum)
        raise Interrupted(signum)

    for signum in (signal.SIGINT, *STOP_SIGNALS):
        signal.signal(signum, handler)
