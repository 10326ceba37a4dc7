"""The user's submission limit (issue 31, item 6) on the real test cluster, which enforces limits
(AccountingStorageEnforce=associations,limits): a grid larger than the room left under MaxSubmitJobs goes out up
to it, the rest stays missing with the reason in the submit output and in --dry-run and --status, and --wait
submits it as jobs end. The limit is set on a QOS of the test's own, which only its cells ask for, so no other
test is limited; the QOS is removed after."""
from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from conftest import QOS_LIMIT, Light, attempts
from slurm_cluster import logged, submissions

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("cluster")]


def test_a_grid_beyond_max_submit_jobs_goes_out_up_to_it_and_wait_tops_up(light: Light, limited_qos: str) -> None:
    cells = ["where=h100", "variant=a,b", "count=1,2", f"+where.qos={limited_qos}"]
    reason = f"2 cells wait: MaxSubmitJobs {QOS_LIMIT} (QOS {limited_qos}; 0 of the user's jobs queued or running)"
    planned = light.cli(*cells, "--dry-run").stdout
    assert reason in planned, planned
    env, log = logged(light.cwd, "scontrol", "sacctmgr")
    light.extra_env = env
    done = light.cli(*cells, "--wait", timeout=300)
    light.extra_env = {}
    out = done.stdout
    # the run checked the cluster and read the limits and MaxArraySize once, and said its opening line once: a
    # top-up only counts the user's queued jobs again and submits
    calls = Counter(" ".join(line.split()[:4]) for line in log.read_text().splitlines())
    assert calls == {"scontrol ping": 1, "scontrol show config": 1, "sacctmgr -n -P show": 2}, log.read_text()
    assert sum(" to run, " in line for line in out.splitlines()) == 1, out
    assert reason in out, out
    assert "2 waiting for room to submit" not in out.splitlines()[-1]
    assert light.states(*cells) == dict.fromkeys(light.states(*cells), "done") and len(light.states(*cells)) == 4
    # each cell went out once, in arrays of at most the room left (as many as jobs ended between polls), each
    # sbatch call taken, never one refused
    runs = [len(attempts(d)) for d in light.cell_dirs() if not d.name.startswith(".")]
    assert runs == [1, 1, 1, 1], runs
    arrays = [int(line.split(": ")[1].split()[0]) for line in out.splitlines() if line.startswith("submitted array")]
    assert sum(arrays) == 4 and max(arrays) <= QOS_LIMIT and len(arrays) >= 2, out
    assert len(submissions(light.cwd)) == len(arrays) and "sbatch refused" not in out, out


def test_status_says_why_cells_wait_and_a_plain_run_leaves_them_missing(light: Light, limited_qos: str) -> None:
    cells = ["where=h100", "variant=a", "count=1,2,3", f"+where.qos={limited_qos}", f"wait_for={light.cwd / 'never'}"]
    try:
        out = light.cli(*cells).stdout
        assert "1 cell waits: MaxSubmitJobs 2" in out and "2 submitted" in out and "1 waiting" in out, out
        states = sorted(light.states(*cells).values())
        assert states.count("missing") == 1 and len(states) == 3, states
        shown = light.cli(*cells, "--status").stdout
        assert f"1 cell waits: MaxSubmitJobs {QOS_LIMIT} (QOS {limited_qos}; 2 of the user's jobs" in shown, shown
    finally:
        for job in submissions(light.cwd):
            subprocess.run(["scancel", job], check=False)


def test_no_limit_is_read_for_a_local_grid(light: Light, tmp_path: Path) -> None:
    """A grid that runs here never asks sacctmgr: a sacctmgr that would fail the run is never called."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sacctmgr").write_text("#!/bin/sh\necho called >> " + str(tmp_path / "called") + "\nexit 1\n")
    (fake / "sacctmgr").chmod(0o755)
    light.extra_env["PATH"] = f"{fake}{os.pathsep}{os.environ['PATH']}"
    light.cli("where=local", "variant=a")
    light.cli("where=local", "variant=a", "--status")
    assert not (tmp_path / "called").exists()
