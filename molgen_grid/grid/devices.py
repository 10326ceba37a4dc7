"""One cell per device at a time, across every sweep on this machine.

Two local cells on the same processor measure each other (two sweeps on one laptop ran at a fifth of their
speed). Each local cell first takes a machine-wide lock named for its device, an `flock` on a file in a shared
directory (the kernel drops it if its holder dies), so sweeps of any experiment, started by anyone, queue for
the device instead of overlapping. The CPU counts as one device; each visible accelerator is one (the devices
CUDA_VISIBLE_DEVICES lists, the variable Slurm's GRES sets too).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
from pathlib import Path
from typing import Callable, Iterator

from molgen_grid.grid.store import is_held

#: The variable that lists the accelerators a process may use, and where the driver lists those present.
VISIBLE = "CUDA_VISIBLE_DEVICES"
_DEVICE_FILES = re.compile(r"^nvidia(\d+)$")


def visible_devices() -> list[str]:
    """The accelerators a process started from here may use (the variable's entries, else every device file the
    driver made: /dev/nvidia0, /dev/nvidia1, ...)."""
    visible = os.environ.get(VISIBLE)
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]
    try:
        numbers = sorted(int(m.group(1)) for m in map(_DEVICE_FILES.match, os.listdir("/dev")) if m)
    except OSError:
        return []
    return [str(n) for n in numbers]


def local_device(requested: str) -> str:
    """The device a local cell that asks for `requested` (its resource option's `device`: auto, cpu, cuda,
    cuda:N) runs on, as a lock name: `cpu` or `cuda-<id>`."""
    if requested == "cpu":
        return "cpu"
    devices = visible_devices()
    if not devices:
        return "cpu"  # auto without an accelerator; a cell that asked for one fails by itself, saying so
    index = int(requested.partition(":")[2] or 0) if requested.startswith("cuda") else 0
    return f"cuda-{devices[min(index, len(devices) - 1)]}"


def device_lock_holder(directory: Path, device: str) -> str | None:
    """Who holds `device` now (as its lock file says), or None when it is free: a probe that takes nothing."""
    path = directory / f"{device}.lock"
    return (path.read_text().strip() or "another sweep") if is_held(path) else None


@contextlib.contextmanager
def device_lock(directory: Path, device: str, waiting: Callable[[str], None]) -> Iterator[None]:
    """Hold the machine-wide lock of `device` (waiting for it, after calling `waiting` with who holds it)."""
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        directory.chmod(0o1777)  # every user of the machine queues on the same files
    path = directory / f"{device}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    with contextlib.suppress(PermissionError):
        os.fchmod(fd, 0o666)  # every user queues on it: the umask (0644 as usually set) must not lock others out
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "another sweep"
            waiting(f"waiting for the {device} (in use by {holder})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
