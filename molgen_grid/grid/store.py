"""The results tree: one directory per cell, crash-safe writes, attempts, and the per-cell lock.

`summary.json` is written last, atomically and durably (fsync); its presence (valid and complete) is what
"done" means, so a cell killed at any moment is never shown as done. The other files are written atomically
but not fsynced: they can be rebuilt, and a thousand fsyncs would cost a large submission seconds. The lock is
an `flock` on a file in the cell directory: the kernel drops it when its holder dies, so a dead sweep can never
keep a cell locked. Files follow the umask (a group-writable tree stays group-writable), pickles aside (only
their owner may write one: loading it runs code), and a tree someone else owns can be read: a status probes
locks through read-only descriptors and writes nothing. No file is written through a symbolic link: a link
planted in a shared tree could send a truncation or a chmod to any file of whoever runs the sweep. Files
written whole go through a temporary file made with O_EXCL|O_NOFOLLOW (mkstemp) and a rename, which replaces a
planted link rather than writing through it; the lock and attempts.jsonl, opened in place, are opened with
O_NOFOLLOW (`open_no_link`), and a link there is refused in one line.
"""
from __future__ import annotations

import errno
import fcntl
import functools
import json
import os
import re
import socket
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from molgen_grid.errors import InputError

SUMMARY = "summary.json"
ERROR = "error.json"
ATTEMPTS = "attempts.jsonl"
CONFIG = "config.yaml"
OVERRIDES = "overrides.json"
RESULTS = "results.json"
LOCK = ".lock"
HISTORY = "history"
LOGS = "logs"
#: The engine's own files in a cell's directory: everything else is an attempt's outcome.
BOOKKEEPING = {ATTEMPTS, OVERRIDES, CONFIG, LOCK, HISTORY, LOGS}
#: How long a run waits for a cell's lock that a status probe or a claim holds for an instant.
LOCK_WAIT_S = 3.0
_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.,=:@+~-]*$")
#: flock's errors on a file system that does not implement it (some NFS and Lustre mounts).
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
#: Added to every open of a file the engine writes in place: a link as the last component fails (ELOOP) instead
#: of leading elsewhere, and a planted FIFO cannot block the open (regular files ignore O_NONBLOCK).
NO_LINK = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def current_umask() -> int:
    """This process's umask (read by setting it, so set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def open_no_link(path: Path, flags: int, mode: int = 0o666, at: int | None = None) -> int:
    """os.open with NO_LINK (relative to the folder open as `at`, when given): a symbolic link at `path` is
    InputError naming it, since writing through it would touch a file the link's maker chose."""
    try:
        return os.open(path.name if at is not None else path, flags | NO_LINK, mode, dir_fd=at)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
    raise InputError(f"{path} is a symbolic link: molgen-grid writes through no link (it could lead to any file "
                     f"of yours); remove the link, or point the setting that names it at a real folder")


def folder(path: Path) -> Path:
    """A folder the engine writes in (a cell's, its history/ and logs/, a report's), made if missing; a symbolic
    link there is InputError naming it, since the files written in it would land where the link's maker chose.
    (A tree's own root, results/ or artifacts/, may be a link: the user chose it.)"""
    if path.is_symlink():
        open_no_link(path, os.O_RDONLY)  # raises, naming it
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_text(path: Path, text: str, durable: bool = False) -> None:
    """Write through a temporary file in the same directory and rename: readers see all or nothing.
    `durable` also fsyncs the file and the directory, so the write survives a crash of the machine."""
    atomic_write_bytes(path, text.encode(), durable)


def atomic_write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    """`atomic_write_text` for bytes (a picture)."""
    _atomic_write(path, data, 0o666, durable)  # mkstemp makes 0600: results are shared on a cluster


def _atomic_write(path: Path, data: bytes, mode: int, durable: bool = False) -> None:
    """`data` into `path` through a temporary file and a rename, with `mode` less the umask. mkstemp opens with
    O_EXCL|O_NOFOLLOW and the rename replaces whatever name was there, so a link at `path` is replaced, never
    written through."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync(path.parent, os.O_RDONLY)


def atomic_write_json(path: Path, data: Any, durable: bool = False) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", durable)


def read_bytes(path: str | Path) -> bytes | None:
    """The file's bytes; None when it is absent; b"" when it is there but cannot be read (a folder, no
    permission). One open, a read and a close through file descriptors: a status of 100,000 cells reads its
    files this way (Path.read_text costs three times the syscalls and a text wrapper). O_NONBLOCK: a FIFO
    planted in a cell's folder cannot block a status."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return b""
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


def parsed_json(data: bytes | None) -> Any:
    """The parsed bytes, or None when there are none or they do not parse."""
    try:
        return None if data is None else json.loads(data)
    except ValueError:
        return None


def read_json(path: str | Path) -> Any:
    """The parsed file, or None when it is absent or does not parse."""
    return parsed_json(read_bytes(path))


def write_pickle(path: Path, value: Any) -> None:
    """Pickle `value` (cloudpickle) into a file writable by its owner alone, whatever the umask: a pickle is
    code, and `load_pickle` loads none that anybody else could have written."""
    import cloudpickle

    _atomic_write(path, cloudpickle.dumps(value), 0o644)


@contextmanager
def owner_writable_only() -> Iterator[None]:
    """Files and folders made meanwhile are writable by their owner alone (group and others lose the bit)."""
    previous = os.umask(0)
    os.umask(previous | 0o022)
    try:
        yield
    finally:
        os.umask(previous)


def trusted(path: Path) -> bool:
    """Whether a file may be unpickled: a plain file (no link), owned by the user running this process and
    writable by nobody else."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() \
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def load_pickle(path: Path) -> Any:
    """The pickled value, or InputError naming why it is not loaded (another user could have written it)."""
    import cloudpickle

    if not trusted(path):
        raise InputError(f"{path} is not loaded: a pickle runs code when loaded, and this one is missing, a link, "
                         f"owned by another user or writable by others (rerun the job to write it anew)")
    return cloudpickle.loads(path.read_bytes())


def safe_component(name: str, what: str) -> str:
    """Refuse a path component that could escape the results tree."""
    if not _SAFE_COMPONENT.match(name) or name in {".", ".."} or ".." in name.split("/"):
        raise InputError(
            f"{what} {name!r} is not a safe directory name: use letters, digits and _ . , = : @ + ~ - only"
        )
    return name


def _flock(fd: int, path: Path, flags: int) -> None:
    """flock, or one line naming the problem when the file system cannot lock."""
    try:
        fcntl.flock(fd, flags)
    except OSError as exc:
        if exc.errno in _NO_FLOCK:
            raise InputError(f"file locks (flock) do not work on the file system of {path.parent} "
                             f"({os.strerror(exc.errno)}): put grid.results_dir on a file system with flock "
                             "(a local disk, or NFS/Lustre mounted with locking)") from None
        raise


def is_held(path: Path) -> bool:
    """Whether a live process holds the exclusive lock on `path`: a probe through a read-only descriptor (so it
    works on a tree this user cannot write) that asks for a shared lock for an instant and writes nothing. A
    shared lock, because NFS emulates flock with POSIX locks, which refuse an exclusive one on a read-only
    descriptor (EBADF); a shared lock is refused exactly while someone holds the exclusive one."""
    try:
        fd = os.open(path, os.O_RDONLY | NO_LINK)
    except OSError:
        return False  # absent, or a link: nobody holds a lock through a link (the engine opens none)
    try:
        _flock(fd, path, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class CellLock:
    """An exclusive lock on one cell, held for as long as the cell is claimed or runs."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def acquire(self, wait_s: float = 0.0) -> bool:
        """Take the lock if nobody holds it (retrying for `wait_s`), and write our host and pid into it."""
        fd = open_no_link(self._path, os.O_RDWR | os.O_CREAT)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                _flock(fd, self._path, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
            except BaseException:
                os.close(fd)
                raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} {os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _fold(lines: list[dict]) -> list[dict]:
    """Attempts from attempts.jsonl: an `update` line completes the attempt it names (a claim, then its job id;
    lines written before attempts had ids complete the attempt before them). An update whose attempt is not
    there (a stray line) completes nothing."""
    attempts: list[dict] = []
    by_id: dict[str, int] = {}
    for line in lines:
        if not line.get("update"):
            if line.get("attempt"):
                by_id[line["attempt"]] = len(attempts)
            attempts.append(line)
            continue
        named = line.get("attempt")
        index = by_id.get(named) if named else (len(attempts) - 1 if attempts else None)
        if index is not None:
            attempts[index] = {**attempts[index], **{k: v for k, v in line.items() if k not in ("update", "when")}}
    return attempts


def as_record(data: Any) -> dict | None:
    """A JSON object as a record (a summary, an error record); anything else is none."""
    return data if isinstance(data, dict) else None


class CellStore:
    """The directory of one cell and the files in it."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = safe_component(name, "cell name")
        self.root = root
        #: The folder as text: files are read by `os` calls on it, without a Path per file (a plan reads
        #: thousands).
        self.where = os.path.join(root, self.name)

    @functools.cached_property
    def dir(self) -> Path:
        return self.root / self.name

    def path(self, filename: str) -> Path:
        return self.dir / filename

    def read(self, filename: str) -> bytes | None:
        """One of the cell's files (read_bytes)."""
        return read_bytes(f"{self.where}/{filename}")

    def summary(self) -> dict | None:
        return as_record(read_json(f"{self.where}/{SUMMARY}"))

    def error(self) -> dict | None:
        return as_record(read_json(f"{self.where}/{ERROR}"))

    def attempts(self) -> list[dict]:
        """Every launch of the cell, oldest first (each claim with what its executor added since); a claim
        withdrawn before its cell was sent (sbatch refused it) is no attempt."""
        data = self.read(ATTEMPTS)
        if not data:
            return []
        out = []
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return [a for a in _fold(out) if not a.get("withdrawn")]

    def attempt(self, attempt_id: object) -> dict | None:
        """The launch recorded under this attempt id (as `attempts()` reads it), or None."""
        return next((a for a in self.attempts() if a.get("attempt") == attempt_id), None)

    def is_locked(self) -> bool:
        """Whether a live process holds this cell's lock (see `is_held`)."""
        return is_held(self.path(LOCK))

    @contextmanager
    def locked(self, wait_s: float = LOCK_WAIT_S) -> Iterator[bool]:
        """Yield whether this process got the cell's lock (waiting up to `wait_s`); release it on exit."""
        folder(self.dir)
        lock = CellLock(self.path(LOCK))
        got = lock.acquire(wait_s=wait_s)
        try:
            yield got
        finally:
            lock.release()

    def append_attempt(self, record: dict) -> None:
        """One JSON line (`update` lines complete the last attempt); O_APPEND keeps concurrent lines whole."""
        line = json.dumps({"when": time.time(), **record}, default=str) + "\n"
        fd = open_no_link(self.path(ATTEMPTS), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def outcome_files(self) -> list[Path]:
        """What an attempt left in the cell's directory besides the engine's bookkeeping: its summary or error
        record and every file of the task's own."""
        try:
            return sorted(p for p in self.dir.iterdir() if p.name not in BOOKKEEPING)
        except OSError:
            return []

    def history_folder(self, suffix: str = "") -> Path:
        """A new folder of history/ for what a rerun or an acceptance moves aside, named by when and by whom."""
        return folder(folder(self.dir / HISTORY) / f"{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}{suffix}")

    def retire_outcome(self) -> None:
        """Move a previous outcome (summary, error, the task's files) aside before a rerun, into one folder of
        history/: nothing complete is lost, and the new attempt starts from an empty directory."""
        previous = self.outcome_files()
        if not previous:
            return
        kept = self.history_folder()
        for source in previous:
            os.replace(source, kept / source.name)

    def make_durable(self) -> None:
        """fsync every file the task wrote and the directories holding them: a summary written after this
        never stands for files a crash of the machine could empty."""
        for path in self.outcome_files():
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for file in files:
                _fsync(file, os.O_RDONLY)
            if path.is_dir():
                for parent in {f.parent for f in files} | {path}:
                    _fsync(parent, os.O_RDONLY)
        _fsync(self.dir, os.O_RDONLY)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
