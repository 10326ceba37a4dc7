"""Every Slurm state word maps onto a cell state, as sacct and squeue print them: live and held jobs are never
resubmitted (queued, running, requeued, held), a held one says how to let it go on, and the ways a job ends
badly are failed with Slurm's word. The words the test cluster can produce are also tested there
(test_slurm.py, test_slurm_in_flight.py); the others (a node failure, a preemption, a reservation deleted) are
read here from the words alone."""
from __future__ import annotations

import time

import pytest

from molgen_grid.grid.executors.slurm import SlurmView
from molgen_grid.grid.executors import slurm_status
from molgen_grid.grid.executors.slurm_status import ClusterView, SlurmJob, _with_live
from molgen_grid.grid.plan import why_run
from molgen_grid.grid.state import FAILED, HELD, QUEUED, REQUEUED, RUNNING

JOB = "41_3"
ATTEMPT = {"job_id": JOB, "when": time.time(), "executor": "slurm"}


def state_of(job: SlurmJob, error: dict | None = None):
    return SlurmView(ClusterView({JOB: job})).job_state(ATTEMPT, error)


@pytest.mark.parametrize("word, reason, requeued, cell, says", [
    ("PENDING", "Resources", False, QUEUED, None),
    ("PENDING", "Priority", True, REQUEUED, None),
    ("REQUEUED", None, True, REQUEUED, None),
    ("REQUEUE_FED", None, False, QUEUED, None),
    ("RUNNING", None, False, RUNNING, None),
    ("COMPLETING", None, False, RUNNING, None),
    ("CONFIGURING", None, False, RUNNING, None),
    ("PENDING", "JobHeldUser", False, HELD, f"release it with: scontrol release {JOB}"),
    ("PENDING", "JobHeldAdmin", False, HELD, f"release it with: scontrol release {JOB}"),
    ("PENDING", "job requeued in held state", True, HELD, f"release it with: scontrol release {JOB}"),
    ("REQUEUE_HOLD", None, True, HELD, f"requeue hold: release it with: scontrol release {JOB}"),
    ("SPECIAL_EXIT", None, True, HELD, f"special exit: release it with: scontrol release {JOB}"),
    ("RESV_DEL_HOLD", None, False, HELD, f"resv del hold: release it with: scontrol release {JOB}"),
    ("SUSPENDED", None, False, HELD, f"suspended: resume it with: scontrol resume {JOB}"),
    ("STOPPED", None, False, HELD, f"stopped: continue it with: scancel --signal=CONT {JOB}"),
])
def test_live_and_held_jobs_are_never_resubmitted(word: str, reason: str | None, requeued: bool, cell: str,
                                                  says: str | None) -> None:
    state = state_of(SlurmJob(word, requeued, None, reason))
    assert state.state == cell and state.job_id == JOB
    if says is not None:
        assert state.reason.endswith(says), state.reason
    assert why_run(state, forced=False) is None and why_run(state, forced=True) is None


@pytest.mark.parametrize("word", ["TIMEOUT", "OUT_OF_MEMORY", "CANCELLED", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                                  "DEADLINE", "REVOKED"])
def test_a_job_ended_by_slurm_fails_with_slurms_word_and_reruns(word: str) -> None:
    state = state_of(SlurmJob(word, False, "0:15", None))
    assert state.state == FAILED and state.reason.startswith(word)
    assert why_run(state, forced=False) == FAILED


def test_a_failed_job_keeps_the_python_error_it_recorded() -> None:
    error = {"reason": "ValueError: bad batch", "when": time.time()}
    state = state_of(SlurmJob("FAILED", False, "1:0", None), error)
    assert (state.state, state.reason) == (FAILED, "ValueError: bad batch")


def test_squeue_wins_for_live_jobs_and_sacct_keeps_the_history() -> None:
    """sacct lags the controller: a hold on an unsplit array shows only in squeue's reason."""
    accounted = {JOB: SlurmJob("PENDING", True, "0:0", None), "41_4": SlurmJob("COMPLETED", False, "0:0", None)}
    live = {JOB: SlurmJob("PENDING", False, None, "JobHeldAdmin"), "41_5": SlurmJob("PENDING", False, None, "Priority")}
    merged = _with_live(accounted, live)
    assert merged[JOB] == SlurmJob("PENDING", True, "0:0", "JobHeldAdmin")
    assert merged["41_4"] == accounted["41_4"] and merged["41_5"] == live["41_5"]


def test_a_one_task_arrays_row_under_its_bare_id_is_its_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """For a moment after a one-task array's job ends, sacct prints it under the array's bare id (`2451`, later
    `2451_0`), as the test cluster did for a cell killed for memory: it is that task, never a task gone from the
    accounting (which read failed at once and made a run resubmit it)."""
    printed = "2451|FAILED|1:0|None\n2451.batch|FAILED|1:0|\n2451.0|OUT_OF_MEMORY|0:125|\n"
    monkeypatch.setattr(slurm_status, "_run", lambda cmd: printed if cmd[0] == "sacct" else "")
    view = slurm_status.cluster_view(["2451_0"])
    assert view.jobs["2451_0"].state == "OUT_OF_MEMORY"
    state = SlurmView(view).job_state({"job_id": "2451_0", "when": time.time(), "executor": "slurm"}, None)
    assert state.state == FAILED and state.reason.startswith("OUT_OF_MEMORY"), state
