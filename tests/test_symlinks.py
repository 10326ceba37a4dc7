"""No file the engine writes is written through a symbolic link (issue 28): a link planted at any path the
engine creates, truncates, appends to or chmods (in the results tree, the artifacts tree, the shared device-lock
folder) is replaced or refused in one line, and the file it points at keeps its content, mode and mtime.

The victim of each test is a file of the user who runs the sweep (root here, who would write it anyway): what
matters is that the engine never writes it. Where ownership decides (the shared device-lock folder), the folder,
the link or the lock file belong to a real second user, `nobody`, so the kernel's own guards against links in
sticky folders (fs.protected_symlinks) do not hide what the engine does.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from conftest import Light
from molgen_grid.grid.devices import VISIBLE, local_device
from molgen_grid.grid.store import ATTEMPTS, ERROR, LOCK, SUMMARY
from test_races import as_nobody, nobody_python


def victim(path: Path) -> Path:
    """A file of this user's, owner-only, that no sweep has any business writing."""
    path.write_text("precious\n")
    path.chmod(0o600)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    return path


def untouched(path: Path) -> bool:
    info = path.stat()
    return path.read_bytes() == b"precious\n" and stat.S_IMODE(info.st_mode) == 0o600 \
        and info.st_mtime_ns == 1_000_000_000


def plant(link: Path, target: Path, owner: str | None = None) -> None:
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    if owner:
        os.lchown(link, *ids(owner))


def ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# --- the results tree -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [LOCK, ATTEMPTS])
def test_a_link_at_a_cells_lock_or_attempts_is_refused_and_its_target_untouched(light: Light, tmp_path: Path,
                                                                                 name: str) -> None:
    light.cli("variant=a")
    (cell,) = light.cell_dirs()
    target = victim(tmp_path / "victim")
    plant(cell / name, target)
    done = light.cli("variant=a", "--force", check=False)
    assert done.returncode == 2 and f"{cell / name} is a symbolic link" in one_line(done.stderr), done.stderr
    assert untouched(target)
    assert (cell / SUMMARY).is_file()  # nothing complete is lost


@pytest.mark.parametrize("folder", ["cell", "history", "logs"])
def test_a_link_at_a_folder_the_engine_writes_in_is_refused_and_its_target_untouched(light: Light, tmp_path: Path,
                                                                                      folder: str) -> None:
    """A cell's folder, its history/ or its logs/ planted as a link to another folder: nothing is written there
    (the sweep refuses the ones it makes in one line; the cell's process, which makes history/, fails the cell
    naming the link)."""
    light.cli("variant=a")
    (cell,) = light.cell_dirs()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = victim(elsewhere / "victim")
    if folder == "cell":
        shutil.move(cell, tmp_path / "kept")
        link = cell
    else:
        shutil.rmtree(cell / folder, ignore_errors=True)
        link = cell / folder
    link.symlink_to(elsewhere)
    done = light.cli("variant=a", "--force", check=False)
    if folder == "history":  # the attempt fails saying why; the former result stays where it was, done
        error = json.loads((cell / ERROR).read_text())
        assert done.returncode == 1 and f"{link} is a symbolic link" in error["message"]
        assert light.states("variant=a") == {cell.name: "done"}
    else:
        assert done.returncode == 2 and f"{link} is a symbolic link" in one_line(done.stderr), done.stderr
    assert untouched(target) and [p.name for p in elsewhere.iterdir()] == ["victim"]


def test_a_summary_or_error_at_a_link_is_moved_aside_and_its_target_untouched(light: Light, tmp_path: Path) -> None:
    light.cli("variant=a")
    (cell,) = light.cell_dirs()
    targets = {name: victim(tmp_path / name) for name in (SUMMARY, ERROR)}
    for name, target in targets.items():
        plant(cell / name, target)
    light.cli("variant=a", "--force")
    assert all(untouched(target) for target in targets.values())
    assert (cell / SUMMARY).is_file() and not (cell / SUMMARY).is_symlink()


# --- the artifacts tree ---------------------------------------------------------------------------------------------


def test_a_report_replaces_links_at_its_files_and_leaves_their_targets_alone(light: Light, tmp_path: Path) -> None:
    grid = ["--experiment", "wide", "scale=1.0,2.0", "variant=a,b", f"grid.artifacts_dir={tmp_path / 'artifacts'}"]
    light.cli(*grid)
    out = tmp_path / "artifacts" / "wide"
    cell = light.cell_dirs("wide")[0].name
    (out / cell).mkdir(parents=True)
    paths = [out / name for name in ("report.csv", "report.md", "throughput.png", "heatmap.png", "heatmap.csv",
                                     ".report-files", f"{cell}/{SUMMARY}")] + [tmp_path / "artifacts" / "README.md"]
    targets = {path: victim(tmp_path / f"victim-{i}") for i, path in enumerate(paths)}
    for path, target in targets.items():
        plant(path, target)
    light.cli_here("--report", *grid, "--heatmap", "variant,scale")
    assert [path.name for path, target in targets.items() if not untouched(target)] == []
    assert all(path.is_file() and not path.is_symlink() for path in paths)


# --- the shared device-lock folder ----------------------------------------------------------------------------------


def locks_of(tmp_path: Path, owner: str, mode: int) -> Path:
    """A device-lock folder made by someone else: `owner`, with `mode`."""
    folder = tmp_path / "shared-locks"
    folder.mkdir()
    folder.chmod(mode)
    os.chown(folder, *ids(owner))
    return folder


def test_a_lock_file_linked_by_another_user_is_refused_and_its_target_untouched(light: Light, tmp_path: Path) -> None:
    locks = locks_of(tmp_path, "nobody", 0o1777)
    target = victim(tmp_path / "victim")
    plant(locks / "cpu.lock", target, owner="nobody")
    done = light.cli("variant=a", f"grid.device_locks={locks}", check=False)
    assert untouched(target)
    (cell,) = light.cell_dirs()
    error = (cell / ERROR).read_text()
    assert f"{locks / 'cpu.lock'} is a symbolic link" in error and "0 done, 0 run, 1 failed" in done.stdout


def test_a_lock_file_of_another_user_is_used_but_never_truncated_or_chmodded(light: Light, tmp_path: Path) -> None:
    locks = locks_of(tmp_path, "nobody", 0o1777)
    theirs = victim(locks / "cpu.lock")
    os.chown(theirs, *ids("nobody"))
    done = light.cli("variant=a", f"grid.device_locks={locks}")
    assert "0 done, 1 run, 0 failed" in done.stdout and untouched(theirs)


def test_a_lock_folder_the_engine_did_not_make_is_never_chmodded(light: Light, tmp_path: Path) -> None:
    locks = locks_of(tmp_path, "nobody", 0o755)
    before = locks.stat()
    light.cli("variant=a", f"grid.device_locks={locks}")
    after = locks.stat()
    assert stat.S_IMODE(after.st_mode) == 0o755 and (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    made = tmp_path / "made" / "locks"
    light.cli("variant=b", f"grid.device_locks={made}")
    assert stat.S_IMODE(made.stat().st_mode) == 0o1777 and stat.S_IMODE(made.parent.stat().st_mode) != 0o1777


def test_a_second_user_queues_on_a_lock_file_they_may_only_read(light: Light) -> None:
    """`nobody` runs a sweep on a lock folder where root's lock file is read-only to them (0644, made under an
    older release or by hand): flock needs no write access, so the cell runs and the file stays root's."""
    base = Path(tempfile.mkdtemp(prefix="molgen-read-only-lock-"))
    try:
        env = nobody_python(base)
        locks = base / "locks"
        locks.mkdir()
        locks.chmod(0o1777)
        root_s = victim(locks / "cpu.lock")
        root_s.chmod(0o644)
        theirs = base / "theirs"
        shutil.copytree(light.cwd, theirs, ignore=shutil.ignore_patterns("results", "__pycache__", ".locks"))
        for path in [theirs, *theirs.rglob("*")]:
            os.chown(path, *ids("nobody"))
        done = as_nobody(["variant=b", f"grid.device_locks={locks}"], theirs, env)
        assert done.returncode == 0 and "0 done, 1 run, 0 failed" in done.stdout, done.stdout + done.stderr
        assert root_s.read_bytes() == b"precious\n" and stat.S_IMODE(root_s.stat().st_mode) == 0o644
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- the device a local cell asks for -------------------------------------------------------------------------------


def test_any_cuda_n_names_that_visible_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VISIBLE, "3,7")
    assert [local_device(d) for d in ("cuda:0", "cuda:1", "cuda", "auto", "cpu")] == \
        ["cuda-3", "cuda-7", "cuda-3", "cuda-3", "cpu"]


@pytest.mark.parametrize("device", ["cuda:2", "cuda:x"])
def test_a_device_this_machine_cannot_give_is_one_line_before_any_claim(light: Light, device: str) -> None:
    light.extra_env[VISIBLE] = "3,7"
    done = light.cli("variant=a", f"where.device={device}", check=False)
    assert done.returncode == 2 and f"device {device}" in one_line(done.stderr).replace("'", ""), done.stderr
    assert light.cell_dirs() == []
