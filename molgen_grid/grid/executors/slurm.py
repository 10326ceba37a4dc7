"""The Slurm executor: cells grouped by their resources, each group one job array, submit and return.

Cells whose options of the resource group differ go to different partitions; cells that share every resource
setting go out as one `sbatch --array` (split where the cluster's MaxArraySize requires), throttled by
`array_parallelism`. A job
that reaches its time limit or is preempted is requeued through submitit's checkpointing, up to
`max_requeues` times; any other failure is left for the next run to resubmit.

Slurm's states map onto cell states: pending is queued; a requeued job waiting again is requeued; held,
suspended or stopped jobs are held (never resubmitted), with the command that releases them; TIMEOUT,
OUT_OF_MEMORY, CANCELLED, NODE_FAIL, PREEMPTED, BOOT_FAIL, DEADLINE, FAILED end a cell as failed with that word.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import re
import subprocess
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import submitit
from omegaconf import DictConfig, OmegaConf

from molgen_grid.errors import InputError
from molgen_grid.grid.executors import job_entry
from molgen_grid.grid.executors.base import Claim, Events
from molgen_grid.grid.executors.slurm_retry import Growth
from molgen_grid.grid.executors.slurm_cancel import cancel_jobs
from molgen_grid.grid.executors.slurm_limits import SubmitLimits, in_background
from molgen_grid.grid.executors.slurm_status import FAILED_STATES, ClusterView, cluster_view, slurm_answers
from molgen_grid.grid.resources import option_problem
from molgen_grid.grid.plan import Entry
from molgen_grid.grid.state import FAILED, HELD, QUEUED, REQUEUED, RUNNING, CellState, claimer_alive, \
    recorded_outcome
from molgen_grid.grid.store import current_umask, folder, owner_writable_only
from molgen_grid.grid.worker import CellJob, execute

NAME = "slurm"
#: Every job array the engine submits is named so, with its submission's token.
JOB_PREFIX = "molgen-grid-"
DEFAULT_MAX_ARRAY_SIZE = 1001
#: How long a just-submitted job may be missing from sacct before the cell reads as failed.
ACCOUNTING_GRACE_S = 600
RUNNING_STATES = {"RUNNING", "COMPLETING", "CONFIGURING", "RESIZING", "SIGNALING", "STAGE_OUT"}
PENDING_STATES = {"PENDING", "REQUEUED", "REQUEUE_FED"}
#: Reasons of a pending job that waits for someone to release it (sacct words a requeue-hold "job requeued in
#: held state" until the controller rewrites it as JobHeldUser or JobHeldAdmin).
HOLD_REASONS = {"JobHeldUser", "JobHeldAdmin", "job requeued in held state"}
#: Held job states and how to let each go on.
HELD_STATES = {
    "REQUEUE_HOLD": "release it with: scontrol release {job}",
    "SPECIAL_EXIT": "release it with: scontrol release {job}",
    "RESV_DEL_HOLD": "release it with: scontrol release {job}",
    "SUSPENDED": "resume it with: scontrol resume {job}",
    "STOPPED": "continue it with: scancel --signal=CONT {job}",
}


class CellRunner(submitit.helpers.Checkpointable):
    """A cell's code under Slurm, requeued by submitit on timeout or preemption (its checkpoint is a rerun)."""

    def __call__(self, job: CellJob) -> str:
        return execute(job)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """The requeued job, which submitit pickles next, as the sweep pickled it: writable by its owner alone
        whatever the cell's umask (the process ends right after), or the next start would refuse it."""
        os.umask(current_umask() | 0o022)
        return super().checkpoint(*args, **kwargs)


class PlacedArrays(submitit.SlurmExecutor):
    """submitit's executor, each task's pickle written before sbatch runs where the job finds it by its index
    (job_entry.placed_pickle), in a folder of the submission's own that exists before sbatch (its logs go there
    too). submitit's own executor moves the pickles, and makes each job's log folder, after sbatch returned: a
    sweep stopped in between left jobs that failed a minute later. Every submission is an array, one cell too,
    so every job is found by its array's name and its index."""

    #: When the previous array of this sweep went to sbatch (time.time()): submitit's own pause between
    #: submissions (`_throttle`) spans the arrays of a sweep, though each array has an executor of its own.
    last_sent: float = 0.0

    def _internal_process_submissions(self, delayed: list[Any]) -> list[submitit.SlurmJob]:
        placed = job_entry.placed_pickle(self.folder, 0).parent
        for index, submission in enumerate(delayed):
            submission.set_timeout(self.parameters.get("time", 5), self.max_num_timeout)
            (placed / f"{index}_placed.pkl").write_bytes(dumped(submission))
        self.parameters["map_count"] = len(delayed)
        self._last_job_submitted = PlacedArrays.last_sent
        self._throttle()
        PlacedArrays.last_sent = time.time()
        first = self._submit_command(self._submitit_command_str)
        tasks = list(range(first.num_tasks))
        return [submitit.SlurmJob(folder=self.folder, job_id=f"{first.job_id}_{index}", tasks=tasks)
                for index in range(len(delayed))]


def dumped(submission: submitit.helpers.DelayedSubmission) -> bytes:
    """A task's pickle: the standard pickler where every object is importable by name (a cell's job is), as
    cloudpickle's own pass costs a large submission a second; cloudpickle for anything else."""
    try:
        return pickle.dumps(submission, pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        import cloudpickle

        return cloudpickle.dumps(submission)


@dataclass
class SlurmView:
    cluster: ClusterView

    @property
    def partial(self) -> str | None:
        return self.cluster.partial

    def job_state(self, attempt: dict, error: dict | None) -> CellState:
        """A Slurm cell without a summary since its last attempt, from its job's state."""
        job_id, since = attempt.get("job_id") or self.adopted(attempt), attempt.get("when")
        if job_id is None:
            if claimer_alive(attempt):
                return CellState(QUEUED, "being submitted", None, since)
            return CellState(FAILED, "its sweep ended before submitting it", None, since)
        job = self.cluster.jobs.get(job_id)
        own = recorded_outcome(attempt, error)
        if job is None:
            if own is not None:
                return own
            if self.cluster.blind:
                return CellState(QUEUED, "state unknown: Slurm does not answer", job_id, since)
            if self.cluster.partial is None:
                if job_id.split("_")[0] in self.cluster.accounted:
                    return CellState(FAILED, f"job {job_id} is gone: neither queued nor in accounting, though the "
                                             "rest of its array is (cancelled before it started)", job_id, since)
                if time.time() - (since or 0) < ACCOUNTING_GRACE_S:
                    return CellState(QUEUED, "submitted; not yet in accounting", job_id, since)
                return CellState(FAILED, f"job {job_id} is not in the cluster's accounting (purged, or another "
                                         "cluster)", job_id, since)
            return CellState(FAILED, f"ended without a summary ({self.cluster.partial})", job_id, since)
        return self._from_job(job_id, job, own, since)

    def adopted(self, attempt: dict) -> str | None:
        """The job of an attempt whose submission was cut short after sbatch took it: found by its job name."""
        array = self.cluster.named.get(job_name(attempt["submission"])) if attempt.get("submission") else None
        return f"{array}_{attempt['index']}" if array is not None else None

    @staticmethod
    def _from_job(job_id: str, job: Any, own: CellState | None, since: float | None) -> CellState:
        if job.state in HELD_STATES:
            how = HELD_STATES[job.state].format(job=job_id)
            return CellState(HELD, f"{job.state.lower().replace('_', ' ')}: {how}", job_id, since)
        if job.state in PENDING_STATES:
            if job.reason in HOLD_REASONS:
                return CellState(HELD, f"held ({job.reason}): release it with: scontrol release {job_id}", job_id,
                                 since)
            return CellState(REQUEUED if job.requeued else QUEUED, None, job_id, since)
        if job.state in RUNNING_STATES:
            return CellState(RUNNING, "requeued before" if job.requeued else None, job_id, since)
        own_reason = own.reason if own is not None else None
        if job.state in FAILED_STATES and job.state != "FAILED":
            return CellState(FAILED, job.state + (f": {own_reason}" if own_reason else ""), job_id, since)
        if own is not None:
            return own
        return CellState(FAILED, f"job {job.state} (exit {job.exit_code}) without a summary", job_id, since)


@dataclass(frozen=True)
class Resources:
    """What sbatch is asked for: cells with equal resources share one job array. None: the cluster's default
    (a partition left out goes to the cluster's default partition)."""

    partition: str | None
    gres: str | None
    cpus_per_task: int
    mem_gb: float
    time_min: int
    account: str | None
    qos: str | None
    constraint: str | None
    #: Free sbatch parameters (long names without `--`) and shell lines run before the job, as JSON.
    additional: str
    setup: tuple[str, ...]

    @classmethod
    def of(cls, option: dict[str, Any]) -> "Resources":
        """From a cell's resources (its option of the resource group, or an app's launcher keys)."""
        def text(key: str) -> str | None:
            return None if option.get(key) is None else str(option[key])

        return cls(
            partition=text("partition"), gres=text("gres"),
            cpus_per_task=int(option.get("cpus_per_task") or 1), mem_gb=float(option.get("mem_gb") or 4),
            time_min=int(option.get("time_min") or 60), account=text("account"), qos=text("qos"),
            constraint=text("constraint"), additional=json.dumps(option.get("additional") or {}, sort_keys=True),
            setup=tuple(str(line) for line in option.get("setup") or ()),
        )

    def sbatch(self) -> dict[str, Any]:
        """submitit's parameters for these resources (the keys left at the cluster's default omitted)."""
        chosen = {"partition": self.partition, "gres": self.gres, "account": self.account, "qos": self.qos,
                  "constraint": self.constraint}
        return {**{k: v for k, v in chosen.items() if v is not None}, "cpus_per_task": self.cpus_per_task,
                "mem": f"{int(self.mem_gb * 1024)}M", "time": self.time_min,
                "additional_parameters": json.loads(self.additional), "setup": list(self.setup)}


def job_name(token: str) -> str:
    return JOB_PREFIX + token


def max_array_size() -> int:
    """The cluster's MaxArraySize (arrays of more tasks are split)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return DEFAULT_MAX_ARRAY_SIZE
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(match.group(1)) if match else DEFAULT_MAX_ARRAY_SIZE


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class SlurmExecutor:
    name = NAME
    blocking = False

    def __init__(self, settings: DictConfig, root: Path) -> None:
        self.settings = OmegaConf.to_container(settings.slurm)
        self.group = settings.resources
        self.folder = root / ".slurm"
        self.growth = Growth(OmegaConf.to_container(settings.retry.grow))
        #: Where a refused request is mended.
        self.fix = f"see conf/{self.group}/ or override {self.group}.*" if self.group else \
            "override hydra.launcher.partition and its other keys"

    def check(self, options: dict[str, dict[str, Any]]) -> None:
        """Refuse an option whose values sbatch could not be given as written (null: the cluster's default), or
        a cluster that does not answer, before a cell is claimed."""
        for label, option in options.items():
            problem = option_problem(label, option)
            if problem:
                raise InputError(f"{problem} (null or left out: the default)")
        if options and not slurm_answers():
            raise InputError(f"{', '.join(sorted(options))} needs a Slurm cluster and no Slurm controller answers "
                             f"here (scontrol ping): start one (bash sbatch/test-cluster.sh start) or choose an "
                             f"option of {self.group} that runs here")

    def view(self, attempts: list[dict]) -> SlurmView:
        unresolved = {job_name(a["submission"]): a.get("when") or 0 for a in attempts
                      if a.get("submission") and not a.get("job_id")}
        return SlurmView(cluster_view([str(a["job_id"]) for a in attempts if a.get("job_id")], unresolved))

    def request(self, entry: Entry, option: dict[str, Any], claimed: str | None = None) -> tuple[dict, str | None]:
        """What the cell's next attempt asks for: its option, grown after its job ran out of memory or time
        (slurm_retry.py), and what grew and why. `claimed`: the attempt being launched, not the one that failed."""
        before = [a for a in entry.store.attempts() if a.get("attempt") != claimed] if entry.state.state == FAILED \
            else []
        asked = Resources.of(option)
        return self.growth.request(option, {"mem_gb": asked.mem_gb, "time_min": asked.time_min},
                                   entry.state.reason if before else None, before[-1] if before else {})

    def admit(self, options: list[dict[str, Any]], noun: str = "cell") -> tuple[list[bool], list[str]]:
        """Which of these cells (each its resources, in launch order) the user's MaxSubmitJobs lets go out now
        (slurm_limits.py), and the lines that say why the rest wait."""
        def text(value: Any) -> str | None:
            return None if value is None else str(value)

        return self.limits.with_queued().admit([(text(o.get("account")), text(o.get("qos"))) for o in options],
                                               noun)

    def prefetch(self) -> None:
        self._limits_read  # noqa: B018 - starts the read

    @cached_property
    def _limits_read(self) -> Future[SubmitLimits]:
        return in_background(SubmitLimits.read)

    @property
    def limits(self) -> SubmitLimits:
        """The user's MaxSubmitJobs, read once a sweep (a top-up while following reads only the queue again),
        started by `prefetch` where the sweep knew early that cells may come here."""
        return self._limits_read.result()

    @cached_property
    def max_array_size(self) -> int:
        """The cluster's MaxArraySize, read once a sweep."""
        return max_array_size()

    def cancel(self, stops: list[Any], whole_grid: bool) -> None:
        """Cancel these cells' jobs (cancel.py): one scancel per array."""
        cancel_jobs(stops)

    def launch(self, claims: list[Claim], events: Events) -> None:
        """Every cell out as job arrays (one sbatch per resource group and MaxArraySize chunk); returns when
        sbatch took them. sbatch's refusal becomes an InputError naming the partition, and the cells it left
        unsubmitted are withdrawn (they read as before); an interrupt leaves the chunk in flight to be adopted
        by its job name (a later plan finds its jobs) and withdraws the chunks not yet sent."""
        groups: dict[Resources, list[Claim]] = {}
        grown: dict[str, str | None] = {}
        for claim in claims:
            claim.resources, grown[claim.job.attempt] = self.request(claim.entry, claim.resources, claim.job.attempt)
            groups.setdefault(Resources.of(claim.resources), []).append(claim)
        limit = max(1, self.max_array_size - 1)
        chunks = [(resources, chunk) for resources, members in groups.items() for chunk in _chunks(members, limit)]
        sent = 0
        try:
            for resources, chunk in chunks:
                self._submit(resources, chunk, events, grown)
                sent += 1
        except submitit.core.utils.FailedJobError as exc:
            lines = [line for line in str(exc).splitlines() if line.strip()]
            said = lines[-1] if lines else str(exc)
            resources = chunks[sent][0]
            withdraw([c for _, chunk in chunks[sent:] for c in chunk], f"sbatch refused it: {said}")
            raise InputError(f"sbatch refused the {len(chunks[sent][1])} cells for partition "
                             f"{resources.partition or '(the default)'}: {said} ({self.fix})") from None
        except BaseException:
            withdraw([c for _, chunk in chunks[sent + 1:] for c in chunk], "its sweep was stopped before sending it")
            raise

    def _submit(self, resources: Resources, chunk: list[Claim], events: Events, grown: dict[str, str | None]) -> None:
        """One job array. Its name carries a token recorded with each cell's attempt before sbatch runs, so a
        submission cut short after sbatch took it is found on the cluster and adopted, never sent twice; with it
        what the attempt asks for, and what grew since the failed attempt and why."""
        token = uuid.uuid4().hex[:12]
        for index, claim in enumerate(chunk):
            why = {"grown": grown[claim.job.attempt]} if grown.get(claim.job.attempt) else {}
            claim.entry.store.append_attempt({"update": True, "attempt": claim.job.attempt, "submission": token,
                                              "index": index, "tasks": len(chunk), "partition": resources.partition,
                                              "mem_gb": resources.mem_gb, "time_min": resources.time_min, **why})
        # the submission's pickles and logs, there before sbatch runs; the sweep's umask: a group's members all submit
        submission = folder(folder(self.folder) / job_name(token))
        executor = PlacedArrays(folder=submission, max_num_timeout=int(self.settings["max_requeues"]),
                                python=job_entry.command())
        executor.update_parameters(**resources.sbatch(), array_parallelism=int(self.settings["array_parallelism"]),
                                   signal_delay_s=int(self.settings["signal_delay_s"]), job_name=job_name(token))
        # submitit's job pickles are loaded on the node: written with no write bit for others, whatever the umask
        with contextlib.redirect_stderr(io.StringIO()), owner_writable_only():  # and sbatch's refusal said once
            handles = executor.map_array(CellRunner(), [c.job for c in chunk])
        logs = submitit.core.utils.JobPaths(submission, job_id="%A_%a")  # submitit's names, formatted once
        array, template = str(handles[0].job_id).split("_")[0], (str(logs.stdout), str(logs.stderr))
        for index, (claim, handle) in enumerate(zip(chunk, handles)):
            log, err_log = (t.replace("%A", array).replace("%a", str(index)) for t in template)
            claim.entry.store.append_attempt({"update": True, "attempt": claim.job.attempt,
                                              "job_id": str(handle.job_id), "log": log, "err_log": err_log})
        events.submitted(resources.partition or "the default partition", str(handles[0].job_id).split("_")[0],
                         chunk)


def withdraw(claims: list[Claim], why: str) -> None:
    """Take back claims whose cells were never sent: their cells read as they did before the claim."""
    for claim in claims:
        claim.entry.store.append_attempt({"update": True, "attempt": claim.job.attempt, "withdrawn": why})
