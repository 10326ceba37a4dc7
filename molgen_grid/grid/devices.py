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
import stat
from pathlib import Path
from typing import Callable, Iterator

from molgen_grid.errors import InputError
from molgen_grid.grid.store import NO_LINK, is_held, open_no_link

#: The variable that lists the accelerators a process may use, and where the driver lists those present.
VISIBLE = "CUDA_VISIBLE_DEVICES"
_DEVICE_FILES = re.compile(r"^nvidia(\d+)$")
#: What a resource option's `device` may say: auto, cpu, cuda, cuda:N.
_REQUEST = re.compile(r"^(?:auto|cpu|cuda(?::(\d+))?)$")
#: What is dropped from a lock file's text before it is shown.
_UNSAFE_TEXT = re.compile(r"[^\w .:@-]")


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
    cuda:N) runs on, as a lock name: `cpu` or `cuda-<id>`. N counts the visible accelerators, as the cell's own
    code counts them; one past them is InputError (it would queue on another cell's device, then fail)."""
    match = _REQUEST.match(requested)
    if match is None:
        raise InputError(f"device {requested!r} is none of auto, cpu, cuda, cuda:N (N = 0, 1, ...): "
                         f"fix the resource option's device")
    if requested == "cpu":
        return "cpu"
    devices = visible_devices()
    if not devices:
        return "cpu"  # auto without an accelerator; a cell that asked for one fails by itself, saying so
    index = int(match.group(1) or 0)
    if index >= len(devices):
        raise InputError(f"device {requested}: this machine shows {len(devices)} accelerator(s) "
                         f"({VISIBLE}={','.join(devices)}): ask for auto or cuda:0 to cuda:{len(devices) - 1}")
    return f"cuda-{devices[index]}"


def device_lock_holder(directory: Path, device: str) -> str | None:
    """Who holds `device` now (as its lock file says), or None when it is free: a probe that takes nothing."""
    path = directory / f"{device}.lock"
    if not is_held(path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | NO_LINK)
    except OSError:
        return "another sweep"
    try:
        return _holder(fd)
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    """What a lock file says of its holder, kept to plain characters: another user may have written it, and it
    is shown on a terminal."""
    try:
        said = os.pread(fd, 200, 0).decode(errors="replace")
    except OSError:
        said = ""
    return " ".join(_UNSAFE_TEXT.sub("", said).split())[:100] or "another sweep"


def _lock_directory(directory: Path) -> int:
    """The lock folder, open (a link there is refused). Made sticky and world-writable (1777) only when this
    process made it, so that every user queues on the same files and none can remove another's; a folder that
    was there before is someone's choice and is never chmodded."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir()
        made = True
    except FileExistsError:
        made = False
    fd = open_no_link(directory, os.O_RDONLY | os.O_DIRECTORY)
    if made and os.fstat(fd).st_uid == os.getuid():
        os.fchmod(fd, 0o1777)
    return fd


def _lock_file(directory: Path, device: str) -> tuple[int, bool]:
    """The device's lock file, open, and whether this process may write it.

    A file this process makes is its own and open to every user (0666: the umask must not lock others out). A
    file that was there is written (truncated, its holder recorded, made 0666) only when it is a plain file of
    this user with no other name (a hard link could make it any file of ours). Any other plain file (another
    user's) is used for flock alone, read-only when its modes say so: flock needs no write access, and the
    file's content and mode are its owner's. A link or anything but a plain file is refused in one line."""
    folder = _lock_directory(directory)
    path = directory / f"{device}.lock"
    try:
        return os.open(path.name, os.O_RDWR | os.O_CREAT | os.O_EXCL | NO_LINK, 0o666, dir_fd=folder), True
    except FileExistsError:
        fd, writable = _open_existing(path, folder)
    except PermissionError:
        raise InputError(f"cannot make the device lock {path} (the folder is not writable by you): set "
                         f"grid.device_locks or $MOLGEN_GRID_DEVICE_LOCKS to a folder you may write") from None
    finally:
        os.close(folder)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise InputError(f"the device lock {path} is not a plain file: remove it, or set grid.device_locks or "
                         f"$MOLGEN_GRID_DEVICE_LOCKS to a folder of your own")
    return fd, writable and info.st_uid == os.getuid() and info.st_nlink == 1


def _open_existing(path: Path, folder: int) -> tuple[int, bool]:
    """A lock file that was there, open for writing when its modes allow, else read-only; and which."""
    try:
        return open_no_link(path, os.O_RDWR, at=folder), True
    except PermissionError:
        return open_no_link(path, os.O_RDONLY, at=folder), False


@contextlib.contextmanager
def device_lock(directory: Path, device: str, waiting: Callable[[str], None]) -> Iterator[None]:
    """Hold the machine-wide lock of `device` (waiting for it, after calling `waiting` with who holds it)."""
    fd, mine = _lock_file(directory, device)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting(f"waiting for the {device} (in use by {_holder(fd)})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        if mine:
            os.fchmod(fd, 0o666)  # a lock file made under an older release may lack the bits
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
