"""How the front doors end: bad input, an interrupt, a closed pipe, each as one line and an exit status.

`InputError` is the one exception both halves raise for bad user input. Its message is shown to the user as a
single line, so it names the problem and the fix; the front door turns it into exit status 2 before anything in
the results tree is touched. Ctrl-C, SIGTERM and SIGHUP (a dropped SSH session) end with one line and 130, 143
or 129 (128 + the signal), and a
reader that closes the pipe (`| head`) ends the command quietly with status 0, as `git log | head` does.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Callable, NoReturn


class InputError(Exception):
    """Bad user input: an unknown option, a missing file, a path that escapes the results tree."""


def fail(message: str) -> NoReturn:
    """One line on stderr, whitespace folded, and exit status 2."""
    print(f"molgen-grid: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


#: The signals that stop a command or a cell as Ctrl-C (SIGINT) does: a scheduler's or `kill`'s SIGTERM, and the
#: SIGHUP of a terminal that went away (Python's default for both ends the process without a word or a record).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """Ctrl-C, SIGTERM or SIGHUP: what was running stops, is recorded as interrupted, and the command ends."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupt_on_stop_signals() -> None:
    """SIGTERM and SIGHUP end the command as Ctrl-C does."""
    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)


def interrupted(signum: int, detail: str) -> NoReturn:
    """One line on stderr (if it still has a reader: a hung-up terminal has none) and exit status 128 + the
    signal's number."""
    with contextlib.suppress(OSError):
        print(f"molgen-grid: interrupted ({signal.Signals(signum).name}): {' '.join(detail.split())}", file=sys.stderr)
    sys.exit(128 + signum)


def closed_pipe() -> NoReturn:
    """The reader went away: stop writing, quietly, with status 0 (later writes go nowhere)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


def front_door(run: Callable[[], None]) -> None:
    """Run a command: SIGTERM and SIGHUP as Ctrl-C, and any of them, bad input or a closed pipe end it with one
    line (or none)."""
    interrupt_on_stop_signals()
    try:
        run()
    except InputError as exc:
        fail(str(exc))
    except BrokenPipeError:
        closed_pipe()
    except (KeyboardInterrupt, Interrupted) as exc:
        interrupted(getattr(exc, "signum", signal.SIGINT), "nothing was launched")
