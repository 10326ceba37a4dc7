"""Shared helpers: the tool is run as a user runs it, in a subprocess, against a results tree in tmp_path (or,
for what launches nothing, in the test's process); the light study; one done grid and the Slurm test cluster,
each once per pytest run."""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, TextIO, TypeVar

import pytest

from molgen_grid.grid.store import CellStore

# Idle OpenMP threads sleep instead of spinning (read when torch loads, here and in every cell's process): with
# pytest-xdist workers on a small machine, spinning threads of one test's torch starve the others'.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Three workers on two cores: a test that runs the model in its own process does so on one thread, as two
    # threads each would keep the cores oversubscribed (a cell's process still takes the CPUs it is given).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
#: The smallest real cell: the embedded model, one molecule, a few tokens, one timed repeat.
FAST = ["sample_size=1", "batch_size=1", "max_new_tokens=12", "warmup=0", "repeats=1"]
#: The light study (tests/light): the engine's tests run on it (its task imports nothing heavy).
LIGHT = Path(__file__).resolve().parent / "light"
T = TypeVar("T")


def in_process(main: Callable[[], None], argv: list[str], cwd: Path, env: dict[str, str],
               stdout: TextIO | None = None) -> subprocess.CompletedProcess:
    """A front door run in this process (no interpreter to start): its exit status, stdout and stderr, as a
    subprocess would give them. For what needs no process of its own (bad input, --dry-run, --status). With
    `stdout`, the command writes there (a pipe) and the result's stdout is empty."""
    out, err = stdout or io.StringIO(), io.StringIO()
    saved_env, saved_argv = dict(os.environ), sys.argv
    saved_signals = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    code: object = 0
    try:
        os.environ.update(env)
        sys.argv = argv
        with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        for signum, handler in saved_signals.items():
            signal.signal(signum, handler)
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
    code = 0 if code is None else code if isinstance(code, int) else 1
    return subprocess.CompletedProcess(argv, code, "" if stdout else out.getvalue(), err.getvalue())


class Tool:
    """Runs `molgen-grid` (the front door) or `python -m molgen_grid` in one working directory."""

    #: Arguments put before every command's own (the light study's `--config-dir .`).
    prefix: list[str] = []

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.results = cwd / "results"
        self.extra_env: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "300", **self.extra_env}

    def cli(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "molgen_grid.cli", *self.prefix, *args], check, timeout)

    def hydra(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "molgen_grid", *self.prefix, *args], check, timeout)

    def cli_here(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`molgen-grid ARGS` run in this test's process (the same exit status and output): for bad input,
        --dry-run, --status and --report, which launch nothing (cells always run in processes of their own)."""
        from molgen_grid import cli

        done = in_process(lambda: cli.main([*self.prefix, *args]), ["molgen-grid", *self.prefix, *args], self.cwd,
                          {"COLUMNS": "300", **self.extra_env})
        return self.checked(done, check)

    def hydra_here(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`python -m molgen_grid ARGS` run in this test's process."""
        from molgen_grid import __main__ as entry
        from molgen_grid.errors import front_door

        done = in_process(lambda: front_door(entry.run), ["molgen_grid", *self.prefix, *args], self.cwd,
                          {"COLUMNS": "300", **self.extra_env})
        return self.checked(done, check)

    @staticmethod
    def checked(done: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
        if check and done.returncode != 0:
            raise AssertionError(f"{done.args} exited {done.returncode}\nstdout:\n{done.stdout}\n"
                                 f"stderr:\n{done.stderr}")
        return done

    def popen(self, *args: str) -> subprocess.Popen:
        """A sweep in its own process group, so a test can kill its whole tree."""
        return subprocess.Popen([sys.executable, "-m", "molgen_grid.cli", *self.prefix, *args], cwd=self.cwd,
                                env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)

    def run(self, cmd: list[str], check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        """Any command in this working directory with this tool's environment (a console script, a wrapper)."""
        done = subprocess.run(cmd, cwd=self.cwd, env=self.env(), capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{cmd} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")
        return done

    def status(self, *args: str) -> dict:
        """`--status --json`, asked in this process unless the test set variables for a process of its own
        (another import path, a faked library version)."""
        ask = self.cli_here if not self.extra_env else self.cli
        return json.loads(ask("--status", "--json", *args).stdout)

    def states(self, *args: str) -> dict[str, str]:
        return {c["cell"]: c["state"] for c in self.status(*args)["cells"]}

    def cell_dirs(self, experiment: str = "default") -> list[Path]:
        root = self.results / experiment
        return sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []


def attempts(cell_dir: Path) -> list[dict]:
    """The cell's attempts as the engine reads them (each claim completed by its launch's update lines)."""
    return CellStore(cell_dir.parent, cell_dir.name).attempts()


class Light(Tool):
    """The tool on the light study: a copy of tests/light is the working directory (its task imports from the
    cwd; results/ lands in the copy)."""

    prefix = ["--config-dir", "."]

    def __init__(self, cwd: Path) -> None:
        shutil.copytree(LIGHT, cwd, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "results"))
        # Device locks of its own: a cell held in flight never makes another run on this machine wait.
        config = cwd / "config.yaml"
        config.write_text(config.read_text().replace("\ngrid:\n", f"\ngrid:\n  device_locks: {cwd / '.locks'}\n", 1))
        super().__init__(cwd)

    def go(self, name: str) -> Path:
        """A file that lets cells waiting on `wait_for=<it>` go on (created by `release`)."""
        return self.cwd / f"go-{name}"

    def release(self, name: str) -> None:
        self.go(name).write_text("go\n")


@pytest.fixture
def tool(tmp_path: Path) -> Tool:
    return Tool(tmp_path)


@pytest.fixture
def light(tmp_path: Path) -> Light:
    return Light(tmp_path / "light")


def wait_until(probe: Callable[[], T], what: str, timeout: float = 300, every: float = 0.2) -> T:
    """Poll until `probe()` is truthy and return it: tests wait for states, never for fixed times (the timeout
    only ends a test that would hang)."""
    deadline = time.time() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def started(cell_dir: Path) -> bool:
    """Whether the cell's last attempt has begun its code (its process recorded it: signals now reach it)."""
    found = attempts(cell_dir) if cell_dir.is_dir() else []
    return bool(found and found[-1].get("started_at"))


@pytest.fixture(scope="session", autouse=True)
def device_locks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The device locks of this pytest run (each xdist worker's own): the run's local cells never wait on a sweep
    of someone else on this machine, nor on the other worker's cells (tests of the locks name theirs)."""
    locks = tmp_path_factory.mktemp("device-locks")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOLGEN_GRID_DEVICE_LOCKS", str(locks))
        yield locks


@pytest.fixture(scope="session")
def cluster() -> None:
    """The local Slurm test cluster (sbatch/test-cluster.sh), started once per pytest run."""
    subprocess.run(["bash", str(ROOT / "sbatch" / "test-cluster.sh"), "start"], check=True, timeout=600)


#: The benchmark's grid built once per pytest run (real cells, FAST): every attention option that runs here and
#: FlashAttention-2 (unsupported on a CPU), each with a dynamic and a static cache.
DONE_GRID = [*FAST, "attention=eager,sdpa,flash_attention_2", "kv_cache=dynamic,static"]


class DoneGrid:
    """A finished grid of real benchmark cells, and what its run printed; `copy_to` gives a test its own."""

    def __init__(self, tool: Tool, output: str) -> None:
        self.tool, self.output = tool, output

    def copy_to(self, tool: Tool) -> Tool:
        shutil.copytree(self.tool.results, tool.results, dirs_exist_ok=True)
        return tool


@pytest.fixture(scope="session")
def done_grid(tmp_path_factory: pytest.TempPathFactory) -> DoneGrid:
    """Built by the first worker that needs it, under a lock in the folder the run's workers share; the others
    wait for it and read the same tree (tests copy it before they change anything)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    tool, printed = Tool(shared / "done_grid"), shared / "done_grid.out"
    with open(shared / "done_grid.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not printed.exists():
            tool.cwd.mkdir(exist_ok=True)
            done = tool.cli(*DONE_GRID)
            assert "0 done, 6 run, 0 failed" in done.stdout, done.stdout
            printed.write_text(done.stdout)
    return DoneGrid(tool, printed.read_text())


#: The MaxSubmitJobsPerUser of the `limited_qos` fixture's QOS.
QOS_LIMIT = 2


@pytest.fixture
def limited_qos() -> Iterator[str]:
    """A QOS on the Slurm test cluster that lets a user queue at most QOS_LIMIT jobs, allowed to this user's
    associations, gone after: only the cells that ask for it are limited."""
    def sacctmgr(*args: str) -> None:
        subprocess.run(["sacctmgr", "-i", *args], capture_output=True, text=True, check=True, timeout=60)

    name = f"gridtest{os.getpid()}"
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    sacctmgr("add", "qos", name, f"MaxSubmitJobsPerUser={QOS_LIMIT}")
    try:
        sacctmgr("modify", "user", user, "set", f"qos+={name}")
        yield name
    finally:
        subprocess.run(["sacctmgr", "-i", "modify", "user", user, "set", f"qos-={name}"], capture_output=True)
        subprocess.run(["sacctmgr", "-i", "delete", "qos", name], capture_output=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--every-molecule", action="store_true",
                     help="the checks over the default (cdk2) molecules take all 47, not a spread sample of 8 "
                          "(several minutes more)")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """tests/run.sh runs the suite on pytest-xdist workers (`--dist loadgroup`); the tests of the Slurm test
    cluster run one after another on one of them: they cancel, requeue and count its jobs and set its node down,
    which jobs of another test would disturb."""
    for item in items:
        if item.get_closest_marker("slurm") or "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("slurm"))


def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """pytest-xdist groups a test by adding `@group` to its id; where this pytest ignores that (pytest 9.2 with
    pytest-xdist 3.8), the Slurm tests would run on both workers at once: refuse, rather than race."""
    if any(i.startswith("tests/test_slurm.py::") for i in ids) and not any(i.endswith("@slurm") for i in ids):
        raise pytest.UsageError("pytest-xdist did not group the Slurm tests on one worker (this pytest and "
                                "pytest-xdist do not work together): reinstall with pip install -e '.[test]'")
