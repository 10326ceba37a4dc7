"""A Hydra app's multirun on the engine's one pipeline: a job's directory is its own, names keep `@package`, a
stored value is read only from the job's own directory and a pickle only when nobody else could have written
it; on the test cluster, arrays split at MaxArraySize, sbatch's refusal withdraws the claims, and the Slurm keys
every cluster needs reach sbatch.

The app is a tiny one written into the test's directory (no torch), run as its user runs it: `python app.py -m`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from molgen_grid.grid.app.jobs import cell_of
from molgen_grid.grid.cells import ValueSpelling
from molgen_grid.grid.executors.slurm import Resources

APP = '''
import os
import hydra


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg):
    if cfg.get("marker"):
        open(cfg.marker, "w").close()
    return {"lr": cfg.lr, "seed": cfg.seed, "pid": os.getpid()} if not cfg.get("as_set") else {cfg.seed}


if __name__ == "__main__":
    main()
'''
CONFIG = '''
defaults:
  - _self_
  - override hydra/launcher: grid
lr: 0.1
seed: 0
hydra:
  sweep:
    dir: multirun
'''


class TinyApp:
    def __init__(self, folder: Path, config: str = CONFIG) -> None:
        self.dir = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "app.py").write_text(APP)
        (folder / "config.yaml").write_text(config)
        self.sweep = folder / "multirun"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "app.py", "-m", *args], cwd=self.dir, capture_output=True, text=True,
                              timeout=900, env={**os.environ, "COLUMNS": "300"})
        assert not check or done.returncode == 0, done.stdout + done.stderr
        return done

    def status(self, *args: str) -> dict[str, dict]:
        out = self.run(*args, "hydra.launcher.action=status", "hydra.launcher.json=true").stdout
        return {job["cell"]: job for job in json.loads(out.strip().splitlines()[-1])["jobs"]}


def test_a_package_stays_in_the_name() -> None:
    parser = OverridesParser.create()
    spelling = ValueSpelling(parser)
    one = cell_of(["model@encoder=small", "model@decoder=large"], parser, spelling)
    two = cell_of(["model@encoder=large", "model@decoder=large"], parser, spelling)
    assert one.name == "model@decoder=large,model@encoder=small" and two.name != one.name


def test_a_status_whose_reader_went_away_ends_quietly(tmp_path: Path) -> None:
    """`| head` under Hydra's basic sweeper: the launcher's own output, status 0 and no traceback."""
    app = TinyApp(tmp_path / "app")
    app.run("seed=1,2")
    done = subprocess.run(["bash", "-c", f"{sys.executable} app.py -m seed=1,2 hydra.launcher.action=status "
                           "hydra.launcher.json=true | true; exit ${PIPESTATUS[0]}"], cwd=app.dir, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_job_in_the_sweep_dir_is_refused_and_nothing_is_moved(tmp_path: Path) -> None:
    """`${hydra.job.override_dirname}` as subdir: a later sweep with no override would have run in the sweep dir
    itself and retired the other jobs' directories into its history."""
    app = TinyApp(tmp_path / "app")
    subdir = "hydra.sweep.subdir=${hydra.job.override_dirname}"
    app.run("lr=0.1,0.2", subdir)
    refused = app.run(subdir, check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"molgen-grid: error: job #0 (no overrides) would run in {app.sweep}, which holds the sweep dir "
        f"{app.sweep}: give each job a directory of its own: leave hydra.sweep.subdir to the launcher (it names each "
        "job after its overrides), or make it tell every job apart (${hydra.job.override_dirname} without "
        "exclude_keys)"]
    assert not (app.sweep / "history").exists() and not (app.sweep / "attempts.jsonl").exists()
    assert {c: j["state"] for c, j in app.status("lr=0.1,0.2", subdir).items()} == {"lr=0.1": "done",
                                                                                   "lr=0.2": "done"}


def test_two_jobs_that_would_share_a_directory_are_refused_before_any_claim(tmp_path: Path) -> None:
    app = TinyApp(tmp_path / "app")
    refused = app.run("seed=1,2", "lr=0.5", "hydra.sweep.subdir=${hydra.job.override_dirname}",
                      "hydra.job.config.override_dirname.exclude_keys=[seed]", check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"job #0 (seed=1 lr=0.5) and job #1 (seed=2 lr=0.5) would share the directory {app.sweep / 'lr=0.5'}" \
        in refused.stderr, refused.stderr
    assert not list(app.sweep.rglob("attempts.jsonl"))


def test_a_value_file_outside_the_job_is_never_loaded(tmp_path: Path) -> None:
    app = TinyApp(tmp_path / "app")
    app.run("seed=1,2", "+as_set=true")
    marker = tmp_path / "loaded"
    evil = tmp_path / "evil.pkl"
    import cloudpickle

    evil.write_bytes(cloudpickle.dumps(open_marker(marker)))
    summary_path = app.sweep / "as_set=true,seed=1" / "summary.json"
    summary = json.loads(summary_path.read_text())
    for named in (str(evil), "../../evil.pkl"):
        summary_path.write_text(json.dumps({**summary, "value_file": named}))
        refused = app.run("seed=1,2", "+as_set=true", check=False)
        assert refused.returncode == 2 and f"names value_file {named!r}" in refused.stderr, refused.stderr
        assert not marker.exists()
    summary_path.write_text(json.dumps(summary))
    assert app.run("seed=1,2", "+as_set=true").returncode == 0


class open_marker:
    """A pickle that touches a file when it is loaded (what a planted pickle could do)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("how", ["another user's", "group-writable"])
def test_a_pickle_another_user_could_have_written_is_not_loaded(tmp_path: Path, how: str) -> None:
    app = TinyApp(tmp_path / "app")
    app.run("seed=1", "+as_set=true")
    pickle = app.sweep / "as_set=true,seed=1" / "return_value.pkl"
    assert oct(pickle.stat().st_mode & 0o777) == "0o644"
    if how == "another user's":
        os.chown(pickle, 65534, 65534)
    else:
        pickle.chmod(0o664)
    refused = app.run("seed=1", "+as_set=true", check=False)
    assert refused.returncode == 2 and "is not loaded: a pickle runs code when loaded" in refused.stderr, \
        refused.stderr


def test_the_slurm_keys_every_cluster_needs_reach_sbatch_in_both_modes() -> None:
    """A study's option and an app's launcher keys are read by one Resources (executors/slurm.py)."""
    option = {"executor": "slurm", "account": "lab", "qos": "high", "constraint": "h100&ib", "time_min": 30,
              "setup": ["module load cuda"], "additional": {"hold": True}}
    params = Resources.of(option).sbatch()
    assert params["account"] == "lab" and params["qos"] == "high" and params["constraint"] == "h100&ib"
    assert params["setup"] == ["module load cuda"] and params["additional_parameters"] == {"hold": True}
    assert "partition" not in params and params["time"] == 30


# --- on the test cluster ---------------------------------------------------------------------------------------


def scancel(job_ids: list[str]) -> None:
    subprocess.run(["scancel", *job_ids], check=False)


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.usefixtures("cluster")
def test_an_app_sweep_larger_than_max_array_size_is_split(tmp_path: Path) -> None:
    """1,002 jobs against the cluster's MaxArraySize of 1,001: two arrays, every job held (sbatch --hold, a
    free sbatch parameter) and with the account asked for (the test cluster's `lab`, besides the user's default);
    then cancelled. The engine's sweeper, since Hydra's basic one composes every job to validate the batch (about
    75 ms a job here)."""
    app = TinyApp(tmp_path / "app")
    done = app.run("+a=range(0,1002)", "hydra/sweeper=grid", "hydra.launcher.executor=slurm",
                   "hydra.launcher.partition=h100",
                   "hydra.launcher.account=lab", "+hydra.launcher.additional.hold=true")
    arrays = [line.split()[2] for line in done.stdout.splitlines() if line.startswith("submitted array")]
    try:
        assert len(arrays) == 2, done.stdout
        assert "to h100: 1000 jobs" in done.stdout and "to h100: 2 jobs" in done.stdout, done.stdout
        shown = subprocess.run(["scontrol", "show", "job", arrays[1]], capture_output=True, text=True).stdout
        assert "Account=lab" in shown and "JobHeldUser" in shown, shown
        states = {job["state"] for job in app.status("+a=range(0,1002)", "hydra/sweeper=grid").values()}
        assert states == {"held"}, states
    finally:
        scancel(arrays)


@pytest.mark.slurm
@pytest.mark.usefixtures("cluster")
def test_sbatch_refusing_an_app_group_withdraws_its_claims(tmp_path: Path) -> None:
    app = TinyApp(tmp_path / "app")
    refused = app.run("seed=1,2", "hydra.launcher.executor=slurm", "hydra.launcher.partition=nosuch", check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("molgen-grid: error: sbatch refused the 2 cells for partition nosuch: ") \
        and "invalid partition" in line.lower(), line
    assert {j["state"] for j in app.status("seed=1,2").values()} == {"missing"}


@pytest.mark.parametrize("how", ["its own user's", "another user's", "group-writable"])
def test_a_job_pickle_is_loaded_only_when_nobody_else_could_have_written_it(tmp_path: Path, how: str) -> None:
    """Every cell's job starts through executors/job_entry.py (submitit's `python`), which looks at the pickle
    submitit is about to load: the job runs only from its own user's pickle that nobody else can write."""
    from submitit.core.utils import DelayedSubmission, JobPaths

    from molgen_grid.grid.executors import job_entry

    marker = tmp_path / "loaded"
    pickle = JobPaths(tmp_path, job_id="123", task_id=0).submitted_pickle
    DelayedSubmission(open_marker(marker)).dump(pickle)
    pickle.chmod(0o644)
    if how == "another user's":
        os.chown(pickle, 65534, 65534)
    elif how == "group-writable":
        pickle.chmod(0o664)
    env = {**os.environ, "SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "123", "SUBMITIT_LOCAL_GLOBALID": "0",
           "SUBMITIT_LOCAL_NTASKS": "1", "SUBMITIT_LOCAL_LOCALID": "0", "SUBMITIT_LOCAL_NODEID": "0",
           "SUBMITIT_LOCAL_JOB_NUM_NODES": "1"}
    done = subprocess.run(f"{job_entry.command()} -u -m submitit.core._submit {tmp_path}", shell=True, env=env,
                          capture_output=True, text=True, timeout=120)
    if how == "its own user's":
        assert marker.exists(), done.stderr  # submitit ran the job (whose pickle opened the marker when loaded)
    else:
        assert done.returncode == 1 and not marker.exists(), done.stderr
        assert f"molgen-grid: not loading {pickle}: a pickle runs code when loaded" in done.stderr, done.stderr


def test_a_requeued_job_is_pickled_writable_by_its_owner_alone(tmp_path: Path) -> None:
    """A job requeued at its time limit is pickled again on the node by submitit, under the cell's (the sweep's)
    umask: the checkpoint makes that pickle owner-writable as the first one was, or the job's next start would
    refuse it."""
    script = (
        "import os, sys\n"
        "from submitit.core.utils import JobPaths\n"
        "from molgen_grid.grid.executors.slurm import CellRunner\n"
        "os.umask(0o002)\n"
        f"pickle = JobPaths({str(tmp_path)!r}, job_id='7', task_id=0).submitted_pickle\n"
        "CellRunner().checkpoint('job').dump(pickle)\n"
        "print(oct(pickle.stat().st_mode & 0o777))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "0o644", done.stdout + done.stderr
