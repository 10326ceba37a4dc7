"""Each cell once, nothing lost, no one locked out (issue 18): the races and shared-machine faults found in
review, each forced at its exact step (a process held at a pause point, a fault injected where it happens),
never by sleeping and hoping. The engine's behaviour is exercised on the light study (tests/light)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ROOT, attempts, started, wait_until
from molgen_grid.grid.cells import make_cell
from molgen_grid.grid.executors.local import LocalView
from molgen_grid.grid.task.base import Composed
from molgen_grid.grid.task.function import FunctionWork
from molgen_grid.grid.task.study import StudyConfig
from molgen_grid.grid.state import FAILED, read_state
from molgen_grid.grid.store import SUMMARY, CellLock, CellStore, atomic_write_json
from molgen_grid.grid.task import CellHandle
from molgen_grid.grid import worker
from studies import Study, light_study, pause_at


@pytest.fixture
def light(tmp_path: Path) -> Study:
    study = light_study(tmp_path / "study")
    study.extra_env["MOLGEN_TEST_LOCKS"] = str(tmp_path / "locks")
    return study


def locks(study: Study) -> str:
    return f"grid.device_locks={study.extra_env['MOLGEN_TEST_LOCKS']}"


# --- 1. the error record is written before the lock goes ------------------------------------------------------------


def test_a_failed_cell_stays_locked_until_its_error_is_recorded(light: Study, tmp_path: Path) -> None:
    env, flag = pause_at(tmp_path, "molgen_grid.grid.interrupts", "error_record")
    light.extra_env.update(env)
    grid = ["variant=a", "fail=boom", locks(light)]
    first = light.popen(*grid)
    wait_until(flag.exists, "the failed cell never reached its error record")
    del light.extra_env["PYTHONPATH"]
    second = light.cli(*grid)  # while the first cell's process holds the cell
    assert ", 0 to run," in second.stdout and "1 queued or running" in second.stdout, second.stdout
    (cell,) = light.cells(*grid).values()
    assert cell["state"] == "running"
    Path(f"{flag}.go").touch()
    assert first.wait(timeout=60) == 1
    (cell,) = light.cells(*grid).values()
    assert cell["state"] == "failed" and cell["reason"] == "RuntimeError: boom"
    assert len(attempts(light.results / "default" / cell["cell"])) == 1  # the second sweep launched nothing


# --- 2. a worker runs only its cell's last attempt, and never a finished cell -------------------------------------


def claimed_job(study: Study, attempt: str, when: float) -> worker.CellJob:
    """A cell of the light study claimed by hand (as a duplicate Slurm job would find it), and its job."""
    store = CellStore(study.results / "default", "where=local,variant=a")
    store.dir.mkdir(parents=True, exist_ok=True)
    store.append_attempt({"attempt": attempt, "executor": "slurm", "when": when})
    work = FunctionWork(StudyConfig(conf_dir=str(study.cwd), config_name="config",
                                    base_overrides=["experiment=default"],
                                    overrides=[], run_overrides=[], project_dir=os.getcwd(),
                                    cell=make_cell([], {}), files_overrides=["experiment=default"]))
    return worker.CellJob(cell_dir=str(store.dir), experiment="default", cell=store.name, attempt=attempt, axes={},
                          overrides=[], work=work, project_dir=os.getcwd(), executor="slurm")


def test_a_job_of_an_older_attempt_exits_without_running_and_says_why(light: Study, capsys) -> None:
    old = claimed_job(light, "old0000000001", time.time())
    claimed_job(light, "new0000000002", time.time())
    assert worker.execute(old) == worker.SKIPPED
    assert "attempt old0000000001 is no longer the cell's last (attempt new0000000002 is)" in capsys.readouterr().out
    store = CellStore(light.results / "default", "where=local,variant=a")
    assert store.summary() is None and store.error() is None and not store.attempts()[-1].get("started_at")


def test_a_job_of_a_cell_finished_since_its_claim_leaves_the_summary_alone(light: Study, capsys) -> None:
    job = claimed_job(light, "dup0000000001", time.time() - 10)
    store = CellStore(light.results / "default", "where=local,variant=a")
    atomic_write_json(store.path(SUMMARY), {"attempt": "other", "finished_at": time.time()})
    before = store.path(SUMMARY).read_bytes()
    assert worker.execute(job) == worker.SKIPPED
    assert "was finished by attempt other since attempt dup0000000001 was claimed" in capsys.readouterr().out
    assert store.path(SUMMARY).read_bytes() == before and not (store.dir / "history").exists()


def test_a_job_that_cannot_get_its_cells_lock_records_no_error(light: Study, monkeypatch, capsys) -> None:
    job = claimed_job(light, "late000000001", time.time())
    store = CellStore(light.results / "default", "where=local,variant=a")
    monkeypatch.setattr(worker, "CLAIM_WAIT_S", 0.2)
    held = CellLock(store.path(".lock"))
    assert held.acquire()
    try:
        assert worker.execute(job) == worker.SKIPPED
    finally:
        held.release()
    assert "another process holds cell where=local,variant=a's lock" in capsys.readouterr().out
    assert store.error() is None


# --- 4. bad input that only sbatch can judge leaves no claim behind ------------------------------------------------


@pytest.mark.slurm
def test_what_sbatch_refuses_leaves_the_cells_as_they_were(light: Study, cluster: None) -> None:
    grid = ["where=h100", "variant=a,b", "where.gres=gpu:h100:9"]
    done = light.cli(*grid, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "sbatch refused the 2 cells for partition h100" in lines[0] \
        and "Requested node configuration is not available" in lines[0], done.stderr
    assert {c["state"] for c in light.status(*grid)["cells"]} == {"missing"}


# --- 5. a second user of the machine queues on the same device lock -----------------------------------------------


def nobody_python(base: Path) -> dict[str, str]:
    """What the light study needs, readable by `nobody`: the engine's source and its pure-Python libraries,
    copied into `base` (the project and its venv may live where other users cannot enter), for Debian's
    /usr/bin/python3."""
    import importlib.util

    site = base / "site"
    for name in ("molgen_grid", "hydra_plugins"):
        shutil.copytree(ROOT / name, site / name, ignore=shutil.ignore_patterns("__pycache__", "embedded_model"))
    for name in ("hydra", "omegaconf", "antlr4", "submitit", "cloudpickle", "yaml", "rich", "pygments",
                 "markdown_it", "mdurl", "typing_extensions", "packaging"):
        spec = importlib.util.find_spec(name)
        origin = Path(list(spec.submodule_search_locations)[0]) if spec.submodule_search_locations else Path(
            spec.origin)
        (shutil.copytree if origin.is_dir() else shutil.copy)(origin, site / origin.name)
    for path in [base, *base.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(base), "COLUMNS": "300"}


def as_nobody(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", "/usr/bin/python3",
                           "-m", "molgen_grid.cli", "--config-dir", ".", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_second_user_runs_cells_on_a_device_another_user_locked_first(light: Study) -> None:
    base = Path(tempfile.mkdtemp(prefix="molgen-second-user-"))
    try:
        env = nobody_python(base)
        shared_locks = base / "locks"
        old_umask = os.umask(0o022)
        try:
            light.cli("variant=a", f"grid.device_locks={shared_locks}")  # root's cell creates the lock file
        finally:
            os.umask(old_umask)
        theirs = base / "theirs"
        shutil.copytree(light.cwd, theirs, ignore=shutil.ignore_patterns("results", "__pycache__"))
        shutil.chown(theirs, "nobody", "nogroup")
        for path in theirs.rglob("*"):
            shutil.chown(path, "nobody", "nogroup")
        done = as_nobody(["variant=b", f"grid.device_locks={shared_locks}"], theirs, env)
        assert done.returncode == 0 and "0 done, 1 run, 0 failed" in done.stdout, done.stdout + done.stderr
        (summary,) = (theirs / "results" / "default").glob("*/summary.json")
        assert json.loads(summary.read_text())["value"]["median"] == 4.0
        assert (shared_locks / "cpu.lock").stat().st_mode & 0o777 == 0o666
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- 6. a status on NFS, where flock is emulated with POSIX locks --------------------------------------------------

NFS_LOCKS = """\
import errno, fcntl, os

real = fcntl.flock


def flock(fd, operation):
    '''NFS's emulation: an exclusive lock needs a descriptor opened for writing.'''
    if operation & fcntl.LOCK_EX and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    return real(fd, operation)


fcntl.flock = flock
"""


def test_status_of_a_tree_on_nfs_answers_faked_nfs_locks(light: Study, tmp_path: Path) -> None:
    light.cli(locks(light))
    light.cli("variant=c", "fail=boom", locks(light), check=False)  # a cell whose state asks its lock
    site = tmp_path / "nfs-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NFS_LOCKS)
    light.extra_env["PYTHONPATH"] = str(site)
    status = light.cli("--status", "--json", locks(light), "variant=a,b,c", "fail=null,boom")
    assert json.loads(status.stdout)["counts"] == {"done": 2, "failed": 1, "missing": 3}, status.stdout
    again = light.cli(locks(light))  # a run, whose cells' locks are taken for writing, works there too
    assert "2 done, 0 run, 0 failed" in again.stdout


# --- 7. a report never deletes what its manifest names outside its folder -----------------------------------------


@pytest.mark.slow  # a sweep and two reports: about 8 s
def test_a_manifest_that_names_a_file_outside_its_folder_deletes_nothing(light: Study, tmp_path: Path) -> None:
    light.cli(locks(light))
    light.cli("--report", locks(light))
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    manifest = light.cwd / "artifacts" / "default" / ".report-files"
    listed = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(listed + [str(victim), "../../../precious.txt"]))
    light.cli("--report", locks(light))
    assert victim.read_text() == "keep me\n"
    assert str(victim) not in json.loads(manifest.read_text())


# --- 8. a fingerprint with a part missing and another key is stale, not a traceback ------------------------------


def test_a_fingerprint_that_lacks_a_part_reads_stale(light: Study) -> None:
    light.cli("variant=a", locks(light))
    path = light.results / "default" / "where=local,variant=a" / "summary.json"
    summary = json.loads(path.read_text())
    summary["fingerprint"] = {"config": {}, "code": {}, "inputs": {}, "extra": {}}
    path.write_text(json.dumps(summary))
    (cell,) = light.cells("variant=a").values()
    assert cell["state"] == "stale" and cell["reason"].startswith("fingerprint: recorded by an older molgen_grid")


# --- 9. an unknown executor is one line; a cell launched elsewhere meanwhile is not counted done -------------------


@pytest.mark.parametrize("override, line", [
    ("where.executor=nope", "where.executor='nope' (in where=local) is not an executor: choose one of local, slurm "
                            "(grid.executors)"),
    # `timeout_min` was a local option's time limit; `time_min` is a cell's time limit on every executor now, so
    # the old key would be ignored: it is named instead
    ("++where.timeout_min=5", "where=local sets timeout_min: a cell's time limit is time_min, here as on Slurm "
                              "(rename the key)"),
])
def test_a_resource_option_the_engine_cannot_take_is_one_line_before_any_claim(light: Study, override: str,
                                                                             line: str) -> None:
    done = light.cli(override, locks(light), check=False)
    assert done.returncode == 2 and done.stderr.strip() == f"molgen-grid: error: {line}"
    assert not light.results.exists() or not any(light.results.rglob("attempts.jsonl"))


def controller_time_limit_s(job_id: str) -> int:
    """The time limit submitit's local controller (its pid is the cell's job id) enforces: after it, the cell is
    killed."""
    environ = Path(f"/proc/{job_id}/environ").read_bytes().decode().split("\0")
    return int(dict(item.split("=", 1) for item in environ if "=" in item)["SUBMITIT_LOCAL_TIMEOUT_S"])


@pytest.mark.parametrize("resources, limit_s", [("grid.resources=null", None), ("where.time_min=7", 7 * 60)])
def test_a_local_cell_is_stopped_only_by_the_time_limit_its_study_sets(light: Study, resources: str,
                                                                       limit_s: int | None) -> None:
    """A study without `grid.resources` (or an option without `time_min`) sets no time limit, so its cells have
    none (there was a hidden one of 120 minutes); `time_min` is the limit when it is set."""
    cells = [resources, "variant=a", f"wait_for={light.cwd / 'go'}", locks(light)]
    sweep = light.popen(*cells)
    try:
        (cell,) = wait_until(lambda: [d for d in light.cell_dirs() if started(d)], "the cell never started")
        seconds = controller_time_limit_s(attempts(cell)[-1]["job_id"])
        assert seconds == limit_s if limit_s else seconds > 50 * 365 * 24 * 3600, seconds
    finally:
        (light.cwd / "go").write_text("go\n")
        sweep.communicate(timeout=120)
    assert sweep.returncode == 0


def test_a_cell_another_sweep_claimed_meanwhile_counts_as_elsewhere(light: Study, tmp_path: Path) -> None:
    """Sweep A planned the cell as missing and is held before its claim; sweep B claims it and is held after its
    claim; A, let go, finds the cell claimed by B: queued elsewhere, not done."""
    env_a, planned = pause_at(tmp_path / "a", "molgen_grid.grid.claim", "Claimer.__call__", "before")
    env_b, claimed = pause_at(tmp_path / "b", "molgen_grid.grid.claim", "Claimer.__call__", "after")
    light.extra_env.update(env_a)
    a = light.popen("variant=a", locks(light))
    wait_until(planned.exists, "sweep A never planned")
    light.extra_env.update(env_b)
    b = light.popen("variant=a", locks(light))
    wait_until(claimed.exists, "sweep B never claimed")
    Path(f"{planned}.go").touch()
    out = a.communicate(timeout=60)[0]
    assert a.returncode == 0 and "0 done, 0 run, 0 failed, 1 queued or running elsewhere" in out, out
    os.killpg(b.pid, signal.SIGKILL)
    b.wait()


# --- 10. a pid reused after a reboot is not the claimer ----------------------------------------------------------


def test_a_claim_from_before_a_reboot_is_not_alive(tmp_path: Path) -> None:
    store = CellStore(tmp_path, "cell")
    store.dir.mkdir()
    store.append_attempt({"attempt": "a1", "executor": "local", "host": socket.gethostname(),
                          "claimed_by": os.getpid(), "boot_id": "a-boot-before-the-reboot", "process_start": "1"})
    state = read_state(store, lambda summary: None, {"local": LocalView()})
    assert state.state == FAILED and state.reason == "killed: its sweep ended before starting it"


# --- 11. the task's files are durable before the summary --------------------------------------------------------


def test_results_are_made_durable_before_the_summary(tmp_path: Path, monkeypatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store = CellStore(tmp_path, "cell")
    store.dir.mkdir()
    cell = CellHandle(name="cell", experiment="e", dir=store.dir)
    cell.write_json("results.json", {"generations": [1, 2]})
    work = FunctionWork(StudyConfig(conf_dir=str(tmp_path), config_name="config", base_overrides=[], overrides=[],
                                    run_overrides=[], project_dir=str(tmp_path), cell=make_cell([], {}),
                                    files_overrides=[]))
    job = worker.CellJob(cell_dir=str(store.dir), experiment="e", cell="cell", attempt="a1", axes={}, overrides=[],
                         work=work, project_dir=str(tmp_path), executor="local")
    composed = Composed(config={}, fingerprint={"config": {}, "code": {}, "libraries": {}}, origin="grid.task x.run")
    worker.record(job, store, composed, time.time(), cell, {"ms": 1.0})
    results = synced.index(str(store.path("results.json")))
    summary = next(i for i, path in enumerate(synced) if Path(path).name.startswith(".summary.json."))
    assert results < summary
