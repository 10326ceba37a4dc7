"""The grid launcher under a plain Hydra app (app mode, docs/hydra-apps.md).

Hydra's own launcher suites run against it as Hydra's plugins wire them (hydra-core's basic launcher, joblib,
submitit): in process with BasicSweeper (Launcher, Batched) and as a task.py in a subprocess (Integration).
Each job runs in a fresh process, so these take a second or so a job. What the suites ask that the design refuses
on purpose is kept and marked xfail(strict=True) with the reason, also written in docs/hydra-apps.md.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hydra.test_utils.launcher_common_tests import (BatchedSweeperTestSuite, IntegrationTestSuite,
                                                    LauncherTestSuite)
from conftest import QOS_LIMIT, Light, attempts
from slurm_cluster import sacct_final

#: The in-process suites compose with whatever `version_base` an earlier test left behind (Hydra's
#: `initialize_config_dir` restores GlobalHydra, not VersionBase); the suites expect chdir, so it is said.
CHDIR = "hydra.job.chdir=True"
#: A job's directory is named after its cell, not its number: a rerun must find each job's result again.
NAMED_DIRS = ("the launcher names a job's directory after its normalised overrides (Hydra's default subdir, "
              "${hydra.job.num}, is a place in one sweep, not a stable name), so <sweep dir>/0 does not exist")


@pytest.mark.parametrize("launcher_name, overrides", [("grid", [CHDIR])])
class TestGridLauncher(LauncherTestSuite):
    @pytest.mark.xfail(strict=True, reason=NAMED_DIRS)
    def test_sweep_2_jobs(self, hydra_sweep_runner: Any, launcher_name: str, overrides: list[str],
                          tmpdir: Path) -> None:
        super().test_sweep_2_jobs(hydra_sweep_runner, launcher_name, overrides, tmpdir)


@pytest.mark.parametrize("launcher_name, overrides",
                         [("grid", [CHDIR, "hydra/sweeper=basic", "hydra.sweeper.max_batch_size=2"])])
class TestGridLauncherWithBatching(BatchedSweeperTestSuite):
    pass


@pytest.mark.parametrize("task_launcher_cfg, extra_flags",
                         [({}, ["-m", "hydra/launcher=grid", "hydra/hydra_logging=disabled",
                                "hydra/job_logging=disabled"])])
class TestGridLauncherIntegration(IntegrationTestSuite):
    pass


def test_the_engine_runs_after_hydra_rescans_its_plugins(light: Light) -> None:
    """Hydra's test fixtures restore its singletons after each case, which scans its plugins again and executes
    its core plugin modules anew (a new BasicSweeper class): the engine's sweeper, built on the BasicSweeper of
    the latest scan, still runs in the same process (it used to fail with `super(type, obj)`)."""
    from hydra.core.singleton import Singleton

    before = light.cli_here("--dry-run", "variant=a,b")
    Singleton.set_state(copy.deepcopy(Singleton.get_state()))
    after = light.cli_here("--dry-run", "variant=a,b")
    assert after.stdout == before.stdout and "variant=b" in after.stdout, after.stdout


# --- the example app (examples/hydra_app) end to end ------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hydra_app"
GRID = ["model=small,wide", "optim=sgd,adam"]


class App:
    """The example app, copied into a test's directory and run as its user runs it."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "hydra_app"
        shutil.copytree(EXAMPLE, self.dir)
        self.holds = tmp_path / "holds"
        self.holds.mkdir()
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "300", "EXAMPLE_HOLD_DIR": str(self.holds)}

    def run(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "train.py", "-m", *args], cwd=self.dir, env=self.env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def popen(self, *args: str) -> subprocess.Popen:
        """A sweep in its own process group, as a terminal runs it (Ctrl-C reaches the whole group)."""
        return subprocess.Popen([sys.executable, "train.py", "-m", *args], cwd=self.dir, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def status(self, *args: str) -> dict[str, dict]:
        out = self.run(*args, "hydra.launcher.action=status", "hydra.launcher.json=true")
        return {job["cell"]: job for job in json.loads(out.strip().splitlines()[-1])["jobs"]}

    def states(self, *args: str) -> dict[str, str]:
        return {cell: job["state"] for cell, job in self.status(*args).items()}

    def summary(self, cell: str) -> dict:
        return json.loads((self.dir / "multirun" / "train" / cell / "summary.json").read_text())


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.slow
def test_example_sweep_interrupted_resumed_and_stale(tmp_path: Path) -> None:
    app = App(tmp_path)
    out = app.run("model=small", "optim=sgd")
    assert "1 job, 1 to run, 0 done" in out, out
    assert app.summary("model=small,optim=sgd")["value"]["loss"] > 0

    # the whole grid, interrupted (Ctrl-C to the sweep's process group) while its third job runs
    (app.holds / "model=wide,optim=sgd.hold").touch()
    sweep = app.popen(*GRID)
    wait_for_file(app.holds / "model=wide,optim=sgd.started", sweep)
    os.killpg(sweep.pid, signal.SIGINT)
    out = sweep.communicate(timeout=120)[0]
    assert sweep.returncode == 130 and "Traceback" not in out, out
    assert "job #2 model=wide,optim=sgd stopped and is recorded as interrupted" in out, out
    assert "4 jobs, 3 to run, 1 done" in out, out
    assert app.states(*GRID) == {"model=small,optim=sgd": "done", "model=small,optim=adam": "done",
                                 "model=wide,optim=sgd": "interrupted", "model=wide,optim=adam": "missing"}

    # resumed: only the interrupted and the missing job run
    (app.holds / "model=wide,optim=sgd.hold").unlink()
    out = app.run(*GRID)
    assert "4 jobs, 2 to run, 2 done" in out, out
    assert out.count(": running (") == 2 and "] model=wide,optim=sgd: running (interrupted)" in out, out
    assert "] model=wide,optim=adam: running (missing)" in out, out
    assert set(app.states(*GRID).values()) == {"done"}
    first = app.summary("model=small,optim=sgd")["attempt"]

    # an edit of one option's file stales the jobs that use it, and names why; a rerun runs only those
    adam = app.dir / "conf" / "optim" / "adam.yaml"
    adam.write_text(adam.read_text().replace("lr: 0.01", "lr: 0.02"))
    status = app.status(*GRID)
    assert {c: j["state"] for c, j in status.items()} == {
        "model=small,optim=sgd": "done", "model=small,optim=adam": "stale",
        "model=wide,optim=sgd": "done", "model=wide,optim=adam": "stale"}
    assert status["model=small,optim=adam"]["reason"] == "config: optim.lr 0.01 -> 0.02"
    # one of them accepted as it is (hydra.launcher.action=accept): it reads done, its result kept
    accepted = app.run(*GRID, "hydra.launcher.action=accept", "hydra.launcher.accept=['model=small']")
    assert "model=small,optim=adam: accepted config (config: optim.lr 0.01 -> 0.02)" in accepted, accepted
    assert "1 stale job accepted" in accepted and app.states(*GRID)["model=small,optim=adam"] == "done"
    out = app.run(*GRID)
    assert "4 jobs, 1 to run, 3 done" in out and out.count("running (stale)") == 1, out
    assert app.summary("model=small,optim=sgd")["attempt"] == first

    # forced: one job by part of its name
    out = app.run(*GRID, 'hydra.launcher.force=["model=small,optim=sgd"]')
    assert "4 jobs, 1 to run, 3 done" in out and "running (forced)" in out, out
    assert app.summary("model=small,optim=sgd")["attempt"] != first

    # an edit of the app's code stales every job; a comment does not
    train = app.dir / "train.py"
    train.write_text(train.read_text().replace("    hold_if_asked()\n", "    hold_if_asked()  # a comment\n"))
    assert set(app.states(*GRID).values()) == {"done"}
    train.write_text(train.read_text().replace("steps_per_s", "steps_per_second"))
    reasons = {job["reason"] for job in app.status(*GRID).values()}
    assert reasons == {"code: train.py"}, reasons


@pytest.mark.slow
def test_two_sweeps_at_once_run_each_job_once(tmp_path: Path) -> None:
    """A second sweep leaves the job the first one runs alone and takes the rest, whose device (this machine's
    CPU) it waits for: local jobs of every sweep take turns, as a study's cells do. The first sweep then finds the
    rest taken (or already done) and leaves it; each job runs once."""
    app = App(tmp_path)
    (app.holds / "optim=sgd.hold").touch()
    first = app.popen("optim=sgd,adam")
    wait_for_file(app.holds / "optim=sgd.started", first)
    second = app.popen("optim=sgd,adam")
    assert second.stdout is not None
    lines: list[str] = []
    for line in second.stdout:
        lines.append(line)
        if "waiting for the cpu" in line:
            break
    out = "".join(lines)
    assert "2 jobs, 1 to run, 0 done, 1 queued or running" in out and "optim=adam: waiting for the cpu" in out, out
    (app.holds / "optim=sgd.hold").unlink()
    out += second.communicate(timeout=300)[0]
    assert second.returncode == 0 and "] optim=adam: ok in" in out, out
    assert "1 job submitted or running elsewhere, not waited for" in out, out
    out = first.communicate(timeout=300)[0]
    assert first.returncode == 0 and "optim=adam: running" not in out, out  # taken, or done, by the second
    assert set(app.states("optim=sgd,adam").values()) == {"done"}
    for cell in ("optim=sgd", "optim=adam"):
        assert len(attempts(app.dir / "multirun" / "train" / cell)) == 1, cell


def test_a_rerun_returns_every_job_to_the_sweeper(hydra_sweep_runner: Any, tmpdir: Path) -> None:
    """A rerun of a finished sweep runs nothing and still hands BasicSweeper every job, in order, numbered, with
    the value each returned (the pid of the process that ran it: the first sweep's)."""
    def task(cfg: Any) -> dict:
        return {"a": cfg.a, "pid": os.getpid()}

    def sweep() -> Any:
        return hydra_sweep_runner(calling_file=None, calling_module="hydra.test_utils.a_module", task_function=task,
                                  config_path="configs", config_name="compose.yaml", temp_dir=str(tmpdir),
                                  overrides=["hydra/launcher=grid", CHDIR, "+a=0,1,2"])

    with sweep() as first, sweep() as second:
        before, after = first.returns[0], second.returns[0]
    assert [r.return_value for r in after] == [r.return_value for r in before]
    assert [r.return_value["a"] for r in after] == [0, 1, 2]
    assert os.getpid() not in {r.return_value["pid"] for r in before}
    assert [r.hydra_cfg.hydra.job.num for r in after] == [0, 1, 2]
    assert [r.overrides for r in after] == [["+a=0"], ["+a=1"], ["+a=2"]]
    assert [Path(r.working_dir).name for r in after] == ["a=0", "a=1", "a=2"]


def test_a_failed_job_is_recorded_and_rerun_alone(hydra_sweep_runner: Any, tmpdir: Path) -> None:
    """A job whose function raises is failed with its reason (the sweeper re-raises, as with any launcher); the
    next run reruns it alone, and a job whose return JSON cannot hold is stored pickled beside its summary."""
    flag = Path(tmpdir) / "fail"
    flag.touch()

    def task(cfg: Any) -> Any:
        if cfg.a == 1 and flag.exists():
            raise ValueError("a=1 refused")
        return {1, cfg.a}

    def sweep() -> Any:
        return hydra_sweep_runner(calling_file=None, calling_module="hydra.test_utils.a_module", task_function=task,
                                  config_path="configs", config_name="compose.yaml", temp_dir=str(tmpdir),
                                  overrides=["hydra/launcher=grid", CHDIR, "+a=0,1"])

    with pytest.raises(ValueError, match="a=1 refused"), sweep():
        pass
    error = json.loads((Path(tmpdir) / "a=1" / "error.json").read_text())
    assert error["reason"] == "ValueError: a=1 refused" and not error["interrupted"]
    summary = json.loads((Path(tmpdir) / "a=0" / "summary.json").read_text())
    assert summary["value_file"] == "return_value.pkl" and summary["value_type"] == "set"
    first = summary["attempt"]
    flag.unlink()
    with sweep() as again:  # (its exit removes the sweep dir)
        assert [r.return_value for r in again.returns[0]] == [{0, 1}, {1}]
        assert json.loads((Path(tmpdir) / "a=0" / "summary.json").read_text())["attempt"] == first
        assert (Path(tmpdir) / "a=1" / "history").is_dir()  # the failed attempt's files, kept aside


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.usefixtures("cluster")
def test_example_on_the_slurm_test_cluster(tmp_path: Path) -> None:
    """Routed by the app's own `where` group (submit and return, then a mixed sweep that waits for every value),
    and by the launcher's keys alone (hydra-submitit-launcher's names)."""
    app = App(tmp_path)
    out = app.run("optim=sgd,adam", "where=a100")
    assert "submitted array" in out and "to a100: 2 jobs" in out and "not waited for" in out, out
    on_a100 = [job["job_id"] for job in app.status("optim=sgd,adam", "where=a100").values()]
    assert all(on_a100), on_a100
    grid = ["optim=sgd,adam", "where=here,a100"]
    out = app.run(*grid, "hydra.launcher.wait=true")
    assert "4 jobs, 2 to run, 0 done, 2 queued or running" in out or "4 jobs, 2 to run, 2 done" in out, out
    assert set(app.states(*grid).values()) == {"done"}, out
    for job_id in on_a100:
        assert sacct_final(job_id)[0][1:] == ["a100", "COMPLETED"]
    assert app.summary("optim=sgd,where=a100")["provenance"]["slurm_job_id"]
    assert app.summary("optim=sgd,where=here")["provenance"]["slurm_job_id"] is None

    out = app.run("optim=sgd", "seed=1", "hydra.launcher.resources=null", "hydra.launcher.executor=slurm",
                  "hydra.launcher.partition=h100", "hydra.launcher.wait=true")
    assert "to h100: 1 job" in out, out
    (job,) = app.status("optim=sgd", "seed=1", "hydra.launcher.resources=null").values()
    assert job["state"] == "done" and sacct_final(job["job_id"])[0][1:] == ["h100", "COMPLETED"]


@pytest.mark.slow
@pytest.mark.slurm
def test_an_app_sweep_beyond_max_submit_jobs_waits_and_tops_up(tmp_path: Path, cluster: None,
                                                               limited_qos: str) -> None:
    """As a study's grid does (test_submit_limits.py): the jobs beyond the user's MaxSubmitJobs stay missing with
    the reason, and hydra.launcher.wait=true submits them as the first ones end."""
    app = App(tmp_path)
    grid = ["model=small,wide", "optim=sgd,adam", "where=a100", f"+where.qos={limited_qos}"]
    reason = f"2 jobs wait: MaxSubmitJobs {QOS_LIMIT} (QOS {limited_qos}"
    for action in ("dry_run", "status"):  # said before the run too, as a study's --dry-run and --status say it
        out = app.run(*grid, f"hydra.launcher.action={action}")
        assert reason in out, (action, out)
    out = app.run(*grid, "hydra.launcher.wait=true")
    assert reason in out, out
    assert set(app.states(*grid).values()) == {"done"}, out
    arrays = [int(line.split(": ")[1].split()[0]) for line in out.splitlines() if line.startswith("submitted array")]
    assert sum(arrays) == 4 and max(arrays) <= QOS_LIMIT and len(arrays) >= 2, out
    assert all(len(attempts(app.dir / "multirun" / "train" / job)) == 1 for job in app.states(*grid)), out


FAILING_APP = """\
import sys

import hydra


def check(a):
    if a == 1:
        raise ValueError("a=1 is refused")
    if a == 2:
        sys.exit("a=2 gives up")
    return a


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    return check(cfg.a)


if __name__ == "__main__":
    main()
"""


def test_a_failed_app_job_says_why_and_where_in_the_apps_own_file(tmp_path: Path) -> None:
    """The app's function travels by value (cloudpickle), yet its traceback names app.py and its line, not
    `<dynamic-code>`; a job whose function calls sys.exit fails with that reason (it used to read as killed)."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("defaults:\n  - _self_\n  - override hydra/launcher: grid\na: 0\n"
                                                   "hydra:\n  sweep:\n    dir: multirun/app\n")
    (tmp_path / "app.py").write_text(FAILING_APP)
    done = subprocess.run([sys.executable, "app.py", "-m", "a=1,2"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "300"})
    assert done.returncode != 0
    lines = done.stdout.splitlines()
    assert any(line.startswith("[1/2] a=1: failed in ") and "ValueError: a=1 is refused" in line for line in lines)
    assert any(line.startswith("[2/2] a=2: failed in ") and "called sys.exit('a=2 gives up')" in line
               for line in lines), done.stdout
    for job in ("a=1", "a=2"):
        trace = "".join(json.loads((tmp_path / "multirun" / "app" / job / "error.json").read_text())["traceback"])
        assert f'File "{tmp_path / "app.py"}", line' in trace and "<dynamic-code>" not in trace, trace
        (err,) = (tmp_path / "multirun" / "app" / job / "logs").rglob("*.err")
        assert "app.py" in err.read_text() and "Job completed successfully" not in err.with_suffix(".out").read_text()
    logs = subprocess.run([sys.executable, "app.py", "-m", "a=1,2", "hydra.launcher.action=logs",
                           "hydra.launcher.logs='a=1'"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert logs.stdout.startswith("cell a=1: attempt 1 of 1 (id ") and "ValueError: a=1 is refused" in logs.stdout
