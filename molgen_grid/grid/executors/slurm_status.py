"""The cluster's view of the cells' jobs: one batched sacct call (squeue when accounting is down).

Each job's latest run (sacct -D lists every run of a requeued job) with its state word, exit code and Slurm's
reason (a pending job's hold shows only there), and whether it ran before. `executors.slurm` maps these onto
cell states. Never one call per cell, and never a hang: every call has a time limit.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

QUERY_TIMEOUT_S = 20
FAILED_STATES = {"TIMEOUT", "OUT_OF_MEMORY", "CANCELLED", "NODE_FAIL", "PREEMPTED", "FAILED", "BOOT_FAIL",
                 "DEADLINE", "REVOKED"}
_ARRAY_RANGE = re.compile(r"^(\d+)_\[([0-9,\-]+)(?:%\d+)?\]$")


@dataclass(frozen=True)
class JobView:
    """One job as the cluster sees it: Slurm's state word, whether it was requeued before, its exit code and
    Slurm's reason (`JobHeldUser`, `Resources`, ...)."""

    state: str
    requeued: bool = False
    exit_code: str | None = None
    reason: str | None = None


@dataclass
class ClusterView:
    jobs: dict[str, JobView]
    #: None when sacct answered; else why the view is partial (squeue only sees live jobs).
    partial: str | None = None
    #: Neither sacct nor squeue answered: nothing is known of any job.
    blind: bool = False


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


def _from_sacct(job_ids: list[str]) -> dict[str, JobView] | None:
    """Every run of each job (-D: requeues too) with its steps: a job whose step was killed for memory reads
    FAILED at the job level, OUT_OF_MEMORY at the step, and the step's word is the one that explains it."""
    mains = sorted({j.split("_")[0] for j in job_ids})
    out = _run(["sacct", "-D", "-n", "-P", "-o", "JobID,State,ExitCode,Reason", "-j", ",".join(mains)])
    if out is None:
        return None
    history: dict[str, list[list]] = {}
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
        for one in _expand(job_id):
            history.setdefault(one, []).append([state, exit_code, [], reason if reason not in ("", "None") else None])
    views = {}
    for job_id, runs in history.items():
        state, exit_code, steps, reason = runs[-1]
        if state == "FAILED":
            state = next((s for s in steps if s in FAILED_STATES and s != "FAILED"), state)
        earlier = {run[0] for run in runs[:-1]}
        requeued = bool(earlier & {"REQUEUED", "PREEMPTED", "TIMEOUT", "NODE_FAIL"}) or state == "REQUEUED"
        views[job_id] = JobView(state, requeued, exit_code, reason)
    return views


def _from_squeue(job_ids: list[str]) -> dict[str, JobView] | None:
    out = _run(["squeue", "-h", "-r", "-o", "%i|%T|%r", "-j", ",".join(sorted({j.split("_")[0] for j in job_ids}))])
    if out is None:
        return None
    views = {}
    for line in out.splitlines():
        job_id, state, reason = (line.split("|") + ["", ""])[:3]
        for one in _expand(job_id):
            views[one] = JobView(state, state == "REQUEUED", None, reason if reason not in ("", "None") else None)
    return views


def cluster_view(job_ids: list[str]) -> ClusterView:
    """The state of these jobs in one call; partial (squeue: live jobs only) when accounting is unavailable."""
    if not job_ids:
        return ClusterView({})
    jobs = _from_sacct(job_ids)
    if jobs is not None:
        return ClusterView(jobs)
    jobs = _from_squeue(job_ids)
    if jobs is not None:
        return ClusterView(jobs, "accounting (sacct) unavailable: queued and running jobs from squeue; "
                                 "ended jobs from their files only")
    return ClusterView({}, "Slurm does not answer: states from the results tree only", blind=True)
