"""How many more jobs the cluster lets this user queue, so a grid larger than that goes out up to the limit
instead of being refused part way by sbatch.

Slurm counts every array task as one job against MaxSubmitJobs, set on the user's association
(`sacctmgr show assoc`) or on the QOS the job runs under (`sacctmgr show qos`, MaxSubmitJobsPerUser): the
tighter one binds, less the user's jobs already queued or running there (squeue, one line per array task). As
scalableminds' cluster_tools does, the limits are read before sbatch runs, never guessed from its refusal: the
limits with two sacctmgr calls once a sweep, only where the sweep's options of the resource group send cells to
Slurm (a local run reads nothing), in a thread started as the plan begins (`in_background`: slurmdbd's answer
comes while the grid is planned); and the user's jobs that count against them with one squeue call before each
submission (a top-up while following comes after jobs ended). When sacctmgr is absent or refuses, there is no
limit and that is said once.
"""
from __future__ import annotations

import getpass
import subprocess
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, TypeVar

from molgen_grid.grid.executors.slurm_status import QUERY_TIMEOUT_S
from molgen_grid.words import plural

#: The QOS a job runs under when neither it nor its association names one.
DEFAULT_QOS = "normal"

Run = Callable[[list[str]], str]
T = TypeVar("T")


def query(args: list[str]) -> str:
    """A Slurm command's output; OSError or CalledProcessError when it is absent or refuses."""
    return subprocess.run(args, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S, check=True).stdout


@dataclass(frozen=True)
class Limit:
    """The tightest MaxSubmitJobs of one (account, QOS) pair and how many jobs of the user count against it."""

    jobs: int
    where: str
    queued: int

    @property
    def room(self) -> int:
        return max(0, self.jobs - self.queued)

    def wait_reason(self, waiting: int, noun: str = "cell") -> str:
        return f"{plural(waiting, noun)} {'waits' if waiting == 1 else 'wait'}: MaxSubmitJobs {self.jobs} " \
               f"({self.where}; {self.queued} of the user's jobs queued or running)"


@dataclass
class SubmitLimits:
    """The user's submission limits (`read` once a sweep) and the jobs counted against them (`with_queued`)."""

    #: {account: (MaxSubmitJobs or None, default QOS or None)} of the user's associations, and the default account.
    associations: dict[str, tuple[int | None, str | None]] = field(default_factory=dict)
    default_account: str | None = None
    #: {QOS: MaxSubmitJobsPerUser} of the QOS that set one.
    qos_limits: dict[str, int] = field(default_factory=dict)
    #: The user's jobs queued or running, per (account, QOS), each array task once.
    queued: Counter = field(default_factory=Counter)
    #: Why no limit is known (sacctmgr absent or refused), said once by the caller.
    unknown: str | None = None

    @classmethod
    def read(cls, run: Run = query) -> "SubmitLimits":
        user = getpass.getuser()
        asked = [["sacctmgr", "-n", "-P", "show", "user", user, "withassoc",
                  "format=defaultaccount,account,maxsubmit,defaultqos"],
                 ["sacctmgr", "-n", "-P", "show", "qos", "format=name,maxsubmitjobsperuser"]]
        try:
            with ThreadPoolExecutor(len(asked)) as pool:  # each waits on slurmdbd (a few tenths of a second)
                rows, qos = ([line.split("|") for line in out.splitlines() if line.strip()]
                             for out in pool.map(run, asked))
        except (OSError, subprocess.SubprocessError) as exc:
            said = getattr(exc, "stderr", None) or str(exc)
            return cls(unknown=f"no submission limit known (sacctmgr: {said.strip().splitlines()[-1]}): "
                               "submitting without one")
        limits = cls(default_account=rows[0][0] if rows else None,
                     associations={row[1]: (_number(row[2]), row[3] or None) for row in rows if len(row) == 4},
                     qos_limits={row[0]: n for row in qos if len(row) == 2 and (n := _number(row[1])) is not None})
        return limits

    def with_queued(self, run: Run = query) -> "SubmitLimits":
        """These limits with the user's jobs that count against them now (none asked where no limit is set)."""
        if self.unknown or not (any(jobs is not None for jobs, _ in self.associations.values()) or self.qos_limits):
            return self
        try:
            lines = run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%a|%q"]).splitlines()
        except (OSError, subprocess.SubprocessError):
            lines = []
        return replace(self, queued=Counter(tuple(line.split("|", 1)) for line in lines if "|" in line))

    def applicable(self, account: str | None, qos: str | None) -> list[Limit]:
        """The MaxSubmitJobs that bind jobs asking for this account and QOS (None: the defaults)."""
        account = account or self.default_account
        assoc_jobs, assoc_qos = self.associations.get(account or "", (None, None))
        qos = qos or assoc_qos or DEFAULT_QOS
        found = []
        if assoc_jobs is not None:
            found.append(Limit(assoc_jobs, f"association {account}",
                               sum(n for (a, _), n in self.queued.items() if a == account)))
        if qos in self.qos_limits:
            found.append(Limit(self.qos_limits[qos], f"QOS {qos}",
                               sum(n for (_, q), n in self.queued.items() if q == qos)))
        return found

    def admit(self, wanted: list[tuple[str | None, str | None]], noun: str = "cell") -> tuple[list[bool], list[str]]:
        """Which of these jobs (each its account and QOS, in launch order) may go out now, and one line per limit
        that holds the rest back (or the one line saying no limit is known)."""
        if self.unknown:
            return [True] * len(wanted), [self.unknown]
        left: dict[str, int] = {}
        binding: dict[str, Limit] = {}
        waiting: Counter = Counter()
        admitted = []
        for account, qos in wanted:
            limits = self.applicable(account, qos)
            for limit in limits:
                left.setdefault(limit.where, limit.room)
                binding.setdefault(limit.where, limit)
            full = [limit.where for limit in limits if left[limit.where] <= 0]
            admitted.append(not full)
            if full:
                waiting[min(full)] += 1
            for limit in limits if not full else ():
                left[limit.where] -= 1
        return admitted, [binding[where].wait_reason(count, noun) for where, count in sorted(waiting.items())]


def in_background(read: Callable[[], T]) -> Future[T]:
    """`read()` in a thread of its own, its value (or its exception) in the future: a daemon thread, so that a
    sweep ended by an error or an interrupt before it needed the answer does not wait for it."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(read())
        except BaseException as exc:  # handed to whoever asks for the result
            future.set_exception(exc)

    threading.Thread(target=run, name="slurm-limits", daemon=True).start()
    return future


def _number(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None
