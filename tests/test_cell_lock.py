"""The cell lock excludes: while one process holds a cell, no other can take it, and the kernel frees it when
its holder dies (no stale lock files to clean up after a crash)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from molgen_grid.grid.store import CellLock


def test_a_held_cell_cannot_be_taken_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    held = CellLock(path)
    assert held.acquire()
    other = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                            "from molgen_grid.grid.store import CellLock; "
                            f"sys.exit(0 if CellLock(Path({str(path)!r})).acquire(wait_s=0.2) else 3)"])
    assert other.returncode == 3
    assert not CellLock(path).acquire()  # nor by another open file in this process
    held.release()
    again = CellLock(path)
    assert again.acquire()
    again.release()


def test_the_kernel_frees_a_dead_holders_lock(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", "import os, sys; from pathlib import Path; "
                               "from molgen_grid.grid.store import CellLock; "
                               f"assert CellLock(Path({str(path)!r})).acquire(); print('held', flush=True); "
                               "sys.stdin.read(); os._exit(9)"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert not CellLock(path).acquire()
    holder.kill()
    holder.wait()
    lock = CellLock(path)
    assert lock.acquire()
    lock.release()
