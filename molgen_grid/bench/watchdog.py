"""A hang is a result, not six lost GPU-hours.

A forced backend can hang (the investigation seed saw cuDNN attention spin at 100% CPU, 3% GPU until Slurm
killed the job, which was then requeued twice). Each guarded stretch (a warm-up, a timed pass) gets a budget;
if it is still running when the budget is spent, the watchdog takes every thread's traceback and ends the cell
as `unsupported` with "hung: no progress in N s": through the engine's `give_up` (which records it and ends
the process at once, so a hang inside a kernel cannot hold it, and exits cleanly, so nothing requeues it), or,
called outside the engine, by interrupting the main thread (SIGINT: the caller turns it into the result).
A stretch that runs a child process names how to end it (`on_fire`): `give_up` ends this process at once, so the
watchdog ends the child first, or it would outlive the cell; interrupted, the main thread ends it itself.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
import traceback
from typing import Callable, Iterator

GiveUp = Callable[[str, str], None]


def all_threads() -> str:
    """Every thread's traceback, as the error detail of a hang."""
    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(f"Thread {names.get(ident, ident)}:\n{''.join(traceback.format_stack(frame))}"
                     for ident, frame in sys._current_frames().items())


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in the main thread while guarding, also in a process started with SIGINT
    ignored (a shell's background job, a CI runner): else the watchdog's signal could not end a hang."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class Watchdog:
    def __init__(self, give_up: GiveUp | None) -> None:
        self.give_up = give_up
        #: (reason, every thread's traceback) once it fired.
        self.fired: tuple[str, str] | None = None
        self._deadline: tuple[float, float, str, Callable[[], None] | None] | None = None
        self._changed = threading.Condition()
        threading.Thread(target=self._watch, name="watchdog", daemon=True).start()

    @contextlib.contextmanager
    def guard(self, seconds: float | None, what: str, on_fire: Callable[[], None] | None = None) -> Iterator[None]:
        """Let the block run at most `seconds` (None: no limit); `on_fire` ends what the block started elsewhere
        (a child process) before `give_up` ends this process."""
        with self._changed:
            self._deadline = None if seconds is None else (time.monotonic() + seconds, seconds, what, on_fire)
            self._changed.notify()
        try:
            with interruptible():
                yield
        finally:
            with self._changed:
                self._deadline = None
                self._changed.notify()

    def await_end(self, seconds: float = 60.0) -> None:
        """Once fired, in the main thread: wait for the end the watchdog brings (give_up ends the process, else its
        SIGINT interrupts this wait), so that what its `on_fire` stopped cannot let the cell carry on."""
        time.sleep(seconds)
        raise KeyboardInterrupt

    def _watch(self) -> None:
        with self._changed:
            while True:
                if self._deadline is None:
                    self._changed.wait()
                    continue
                deadline, seconds, what, on_fire = self._deadline
                left = deadline - time.monotonic()
                if left > 0:
                    self._changed.wait(left)
                    continue
                self._deadline = None
                self.fired = (f"hung: no progress in {seconds:.0f} s ({what})", all_threads())
                if self.give_up is not None:
                    if on_fire is not None:
                        on_fire()
                    self.give_up(*self.fired)
                # A real signal to the main thread: it also breaks a blocking call (a sleep, a wait).
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
