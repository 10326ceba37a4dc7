"""The cluster's view of the cells' jobs: one batched sacct call, and one squeue call while any job lives.

sacct gives each job's latest run (-D lists every run of a requeued job) with its state word, exit code, and
whether it ran before. It lags the controller and never records some of what a live job is: a hold put on a
pending array that has not been split into tasks keeps the reason `None` there, and a just-submitted job may not
be there yet. So while any job is pending, running or suspended, squeue's live state and reason win; squeue alone
answers when accounting is down. `executors.slurm` maps these onto cell states. Never one call per cell, and
never a hang: every call has a time limit. How often a follower asks is poll.py's (30 s after the first minute).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field

QUERY_TIMEOUT_S = 20
#: sacct words of a job that squeue still shows, whose live state squeue knows better.
LIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "SUSPENDED", "COMPLETING", "CONFIGURING", "RESIZING", "STOPPED",
               "SIGNALING", "STAGE_OUT", "REQUEUE_HOLD", "REQUEUE_FED", "SPECIAL_EXIT", "RESV_DEL_HOLD"}
FAILED_STATES = {"TIMEOUT", "OUT_OF_MEMORY", "CANCELLED", "NODE_FAIL", "PREEMPTED", "FAILED", "BOOT_FAIL",
                 "DEADLINE", "REVOKED"}
_ARRAY_RANGE = re.compile(r"^(\d+)_\[([0-9,\-]+)(?:%\d+)?\]$")
#: {job name: array job id} of the submissions `named_arrays` found: a job's name and id never change.
_FOUND: dict[str, str] = {}


@dataclass(frozen=True)
class SlurmJob:
    """One Slurm job as the cluster sees it: Slurm's state word, whether it was requeued before, its exit code and
    Slurm's reason (`JobHeldUser`, `Resources`, ...)."""

    state: str
    requeued: bool = False
    exit_code: str | None = None
    reason: str | None = None


@dataclass
class ClusterView:
    jobs: dict[str, SlurmJob]
    #: None when sacct answered; else why the view is partial (squeue only sees live jobs).
    partial: str | None = None
    #: Neither sacct nor squeue answered: nothing is known of any job.
    blind: bool = False
    #: {job name: array job id} of submissions found by name (see `named_arrays`).
    named: dict[str, str] = field(default_factory=dict)
    #: The jobs (array ids) accounting knows: a task of one of them that neither sacct nor squeue lists is gone
    #: (a pending task cancelled before it started leaves no row of its own).
    accounted: set[str] = field(default_factory=set)


def _expand(job_id: str) -> list[str]:
    """`12_[0-3,5]` (a pending array) -> 12_0 .. 12_3, 12_5; other ids unchanged."""
    match = _ARRAY_RANGE.match(job_id)
    if not match:
        return [job_id]
    main, ranges = match.groups()
    out = []
    for part in ranges.split(","):
        first, _, last = part.partition("-")
        out += [f"{main}_{i}" for i in range(int(first), int(last or first) + 1)]
    return out


def _run(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None
    return done.stdout if done.returncode == 0 else None


def slurm_answers() -> bool:
    """Whether a Slurm controller answers here (a quick `scontrol ping`)."""
    out = _run(["scontrol", "ping"])
    return out is not None and "UP" in out


def _from_sacct(job_ids: list[str]) -> dict[str, SlurmJob] | None:
    """Every run of each job (-D: requeues too) with its steps: a job whose step was killed for memory reads
    FAILED at the job level, OUT_OF_MEMORY at the step, and the step's word is the one that explains it. A pending
    array's record (`12_[0-3]`) stands for its tasks until they have rows of their own (sacct -D keeps it after
    they split off)."""
    mains = sorted({j.split("_")[0] for j in job_ids})
    out = _run(["sacct", "-D", "-n", "-P", "-o", "JobID,State,ExitCode,Reason", "-j", ",".join(mains)])
    if out is None:
        return None
    history: dict[str, list[list]] = {}
    unsplit: dict[str, list] = {}
    for line in out.splitlines():
        fields = line.split("|")
        if len(fields) < 4:
            continue
        job_id, state, exit_code, reason = fields[0], fields[1].split()[0], fields[2], fields[3]
        parent, _, step = job_id.partition(".")
        if step:
            for run in (history.get(one, [[None]])[-1] for one in _expand(parent)):
                if run[0] is not None:
                    run[2].append(state)
            continue
        run = [state, exit_code, [], reason if reason not in ("", "None") else None]
        if _ARRAY_RANGE.match(job_id):
            for one in _expand(job_id):
                unsplit[one] = list(run)
        else:
            history.setdefault(job_id, []).append(run)
    for one, run in unsplit.items():  # the not-yet-split array's record, only for tasks without rows of their own
        history.setdefault(one, [run])
    for main in mains:  # a one-task array's row, for a moment after it ended, under the array's bare id
        without_row = [j for j in job_ids if j.startswith(f"{main}_") and j not in history]
        if main in history and main not in job_ids and len(without_row) == 1:
            history[without_row[0]] = history.pop(main)
    views = {}
    for job_id, runs in history.items():
        state, exit_code, steps, reason = runs[-1]
        if state == "FAILED":
            state = next((s for s in steps if s in FAILED_STATES and s != "FAILED"), state)
        earlier = {run[0] for run in runs[:-1]}
        requeued = bool(earlier & {"REQUEUED", "PREEMPTED", "TIMEOUT", "NODE_FAIL"}) or state == "REQUEUED"
        views[job_id] = SlurmJob(state, requeued, exit_code, reason)
    return views


def _from_squeue(job_ids: list[str]) -> dict[str, SlurmJob] | None:
    out = _run(["squeue", "-h", "-r", "-o", "%i|%T|%r", "-j", ",".join(sorted({j.split("_")[0] for j in job_ids}))])
    if out is None:
        return None
    views = {}
    for line in out.splitlines():
        job_id, state, reason = (line.split("|") + ["", ""])[:3]
        for one in _expand(job_id):
            views[one] = SlurmJob(state, state == "REQUEUED", None, reason if reason not in ("", "None") else None)
    return views


def _with_live(accounted: dict[str, SlurmJob], live: dict[str, SlurmJob]) -> dict[str, SlurmJob]:
    """sacct's jobs with squeue's state and reason for those the controller still holds (requeue history and
    exit codes stay sacct's)."""
    merged = dict(accounted)
    for job_id, now in live.items():
        before = accounted.get(job_id)
        merged[job_id] = now if before is None else SlurmJob(now.state, before.requeued or now.requeued,
                                                             before.exit_code, now.reason)
    return merged


def named_arrays(names: dict[str, float]) -> dict[str, str]:
    """{job name: array job id} of the jobs submitted under these names since the given times (a submission cut
    short before its job ids were recorded): squeue for the queue, sacct for jobs that already left it. A name
    once found is never asked again (a follower polls: its next polls ask only about the job ids)."""
    unknown = {name: since for name, since in names.items() if name not in _FOUND}
    if unknown:
        queued = _run(["squeue", "-h", "-r", "-n", ",".join(sorted(unknown)), "-o", "%F|%j"]) or ""
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(min(unknown.values()) - 60))
        accounted = _run(["sacct", "-X", "-n", "-P", "-S", since, f"--name={','.join(sorted(unknown))}",
                          "-o", "JobID,JobName"]) or ""
        for line in (queued + accounted).splitlines():
            job_id, _, name = line.partition("|")
            if name in unknown:
                _FOUND.setdefault(name, job_id.split("_")[0])
    return {name: _FOUND[name] for name in names if name in _FOUND}


def cluster_view(job_ids: list[str], names: dict[str, float] | None = None) -> ClusterView:
    """The state of these jobs (and of those submitted under `names` whose ids were never recorded) in one
    call; partial (squeue: live jobs only) when accounting is unavailable."""
    named = named_arrays(names) if names else {}
    job_ids = job_ids + [f"{array}_0" for array in named.values()]  # their whole array is read with them
    if not job_ids:
        return ClusterView({})
    jobs = _from_sacct(job_ids)
    if jobs is not None:
        live = {j for j in job_ids if j not in jobs or jobs[j].state in LIVE_STATES}
        accounted = {j.split("_")[0] for j in jobs}
        if not live:
            return ClusterView(jobs, named=named, accounted=accounted)
        queued = _from_squeue(sorted(live))
        return ClusterView(_with_live(jobs, queued or {}), named=named,
                           accounted=accounted if queued is not None else set())
    jobs = _from_squeue(job_ids)
    if jobs is not None:
        return ClusterView(jobs, "accounting (sacct) unavailable: queued and running jobs from squeue; "
                                 "ended jobs from their files only", named=named)
    return ClusterView({}, "Slurm does not answer: states from the results tree only", blind=True, named=named)
