"""What runs inside a cell's own process, on this machine or on a Slurm node: compose, run, record.

The cell's process takes the cell's lock (and, for a local cell, its device's machine-wide lock), composes the
cell's config from its overrides (the submitting side never composes every cell), calls the cell's code and
writes its outcome: either `summary.json` (written last, atomically and durably: the cell is done) or
`error.json` (the cell failed, with the exception's class, message and traceback tail; `interrupted` when a
Ctrl-C or SIGTERM of a local run stopped it). A process killed in between leaves neither, which the plan reads
as killed. A submitit requeue (the job's time limit or a preemption) exits the process on purpose: it is not a
failure and leaves no record, the job comes back.
"""
from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from molgen_grid.errors import Interrupted
from molgen_grid.grid.devices import device_lock
from molgen_grid.grid.dotted import load
from molgen_grid.grid.fingerprint import FileHashes, code_closure, digest, input_hashes
from molgen_grid.grid.store import CONFIG, ERROR, RESULTS, SUMMARY, CellStore, atomic_write_json, atomic_write_text

#: A job may start while its submitter still holds the cell's lock for an instant (its claim).
CLAIM_WAIT_S = 120.0
#: The stop signal (Ctrl-C, SIGTERM) this cell's process took, if any (see `interruption`).
_stop_signal: list[int] = []


@dataclass
class CellJob:
    """Everything a cell's process needs; pickled by submitit, so plain data only."""

    cell_dir: str
    experiment: str
    cell: str
    axes: dict[str, str]
    #: The overrides that reproduce the cell, and those that only say how it runs (time limit, ...).
    overrides: list[str]
    run_overrides: list[str]
    #: Where and how to compose its config: the config directory, primary config, Hydra's own overrides.
    conf_dir: str
    config_name: str
    hydra_overrides: list[str]
    task: str
    #: The `grid.versions` hook (dotted path): the library versions its fingerprint records.
    versions: str
    fingerprint_config: dict[str, str]
    executor: str
    provenance: dict[str, Any] = field(default_factory=dict)
    #: A local cell: the sweep that started it (the cell ends when that sweep is gone, so a killed sweep
    #: leaves no orphan benchmark behind) and its device's lock (directory, device). None under Slurm.
    owner_pid: int | None = None
    device_lock: tuple[str, str] | None = None
    #: Variables the cell's process sets before it runs (None: unset), e.g. the launching shell's GPUs.
    environment: dict[str, str | None] = field(default_factory=dict)


def available_cpus() -> int:
    """CPUs this cell may use: Slurm's allocation when it runs under Slurm, else the machine's."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        return int(slurm)
    return len(os.sched_getaffinity(0))


def failure_reason(exc: BaseException) -> str:
    """One line for the status table. A job that submitit did not requeue after its time-limit signal (no
    requeues left) ends here before Slurm would call it TIMEOUT, so it is named TIMEOUT."""
    message = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
    if type(exc).__name__ == "UncompletedJobError" and "timed-out" in message:
        return f"TIMEOUT: {message}"
    stopped = interruption(exc)
    if stopped is not None:
        return stopped
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def interruption(exc: BaseException) -> str | None:
    """"interrupted by SIG...", or None when the attempt failed on its own. A stop signal this process took
    counts whatever exception then ended it: a library may turn the interrupt raised inside it into an error
    of its own (an import of transformers cut by Ctrl-C surfaces as ModuleNotFoundError)."""
    if _stop_signal:
        return f"interrupted by {signal.Signals(_stop_signal[0]).name}"
    if isinstance(exc, Interrupted):
        return f"interrupted by {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by SIGINT"
    return None


def error_record(exc: BaseException) -> dict[str, Any]:
    return {
        "when": time.time(),
        "class": type(exc).__name__,
        "message": str(exc),
        "reason": failure_reason(exc),
        "interrupted": interruption(exc) is not None,
        "traceback": traceback.format_exception(exc)[-12:],
    }


def end_with_owner(pid: int, every_s: float = 1.0) -> None:
    """Exit this process (no outcome written: the cell reads as killed) once process `pid` has ended."""
    def watch() -> None:
        while True:
            time.sleep(every_s)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(137)
            except PermissionError:
                continue

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


def interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM end a local cell with an `Interrupted` exception, so that it is recorded as such; a
    second signal (submitit's controller passes one on) must not break the recording, so it is ignored."""
    def handler(signum: int, frame: Any) -> None:
        for one in (signal.SIGINT, signal.SIGTERM):
            signal.signal(one, signal.SIG_IGN)
        _stop_signal.append(signum)
        raise Interrupted(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def compose_config(job: CellJob) -> dict[str, Any]:
    """The cell's resolved config, composed here from its overrides, less Hydra's and the engine's sections."""
    with initialize_config_dir(config_dir=job.conf_dir, version_base="1.3"):
        cfg = compose(job.config_name, overrides=job.hydra_overrides + [f"experiment={job.experiment}"]
                      + job.overrides + job.run_overrides)
    keys = [k for k in cfg if k not in ("hydra", "grid")]
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)


@contextlib.contextmanager
def held(job: CellJob, store: CellStore) -> Iterator[None]:
    """The cell's lock, then (a local cell) its device's: the cell runs alone, and alone on its device."""
    with store.locked(wait_s=CLAIM_WAIT_S) as got:
        if not got:
            raise RuntimeError(f"cell {job.cell} is being run by another process; not run twice")
        if job.device_lock is None:
            yield
            return
        directory, device = job.device_lock
        with device_lock(Path(directory), device, lambda why: print(why, flush=True)):
            yield


def execute(job: CellJob) -> str:
    """Run one cell and record its outcome; returns the cell's status ("ok" or "unsupported")."""
    store = CellStore(Path(job.cell_dir).parent, Path(job.cell_dir).name)
    for name, value in job.environment.items():  # before the cell's code touches CUDA
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if job.owner_pid is not None:
        end_with_owner(job.owner_pid)
        interrupt_on_signals()
    faulthandler.enable()
    try:
        with held(job, store):
            store.retire_outcome()
            store.append_attempt({"update": True, "started_at": time.time(), "node": socket.gethostname(),
                                  "worker_pid": os.getpid()})
            return _run(job, store)
    except SystemExit:
        raise  # submitit requeued the job (or the process was told to exit): not a failure of the cell
    except BaseException as exc:
        atomic_write_json(store.path(ERROR), error_record(exc))
        raise


def _run(job: CellJob, store: CellStore) -> str:
    started = time.time()
    code = code_closure(job.task)  # the code that runs, as it is now (a queued job may start after an edit)
    config = compose_config(job)
    atomic_write_text(store.path(CONFIG), OmegaConf.to_yaml(config))

    def give_up(reason: str, detail: str) -> None:
        """The cell's code says, from any thread, that the cell cannot run here (it hangs): record it as
        unsupported and end the process at once, cleanly, so that no executor runs it again."""
        record(job, store, config, code, started, {"status": "unsupported", "reason": reason, "detail": detail,
                                                   "metrics": {}, "quality": {}})
        os._exit(0)

    outcome = load(job.task)(OmegaConf.create(config), cpus=available_cpus(), give_up=give_up)
    return record(job, store, config, code, started, outcome)


def record(job: CellJob, store: CellStore, config: dict[str, Any], code: dict[str, str], started: float,
           outcome: dict[str, Any]) -> str:
    """Write the cell's results and, last, its summary (atomically, durably); returns its status."""
    status = outcome.pop("status", None)
    if status not in ("ok", "unsupported"):
        raise ValueError(f"{job.task} returned status {status!r}: expected 'ok' or 'unsupported'")
    generations = outcome.pop("generations", [])
    atomic_write_json(store.path(RESULTS), {"cell": job.cell, "generations": generations})
    hashes = FileHashes()
    fingerprint = {"config": job.fingerprint_config, "code": code,
                   "inputs": input_hashes(outcome.pop("inputs", {}), hashes),
                   "libraries": load(job.versions)()}
    hashes.save()
    provenance = {**outcome.pop("provenance", {}), **job.provenance, "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
    identity = {
        "experiment": job.experiment, "cell": job.cell, "status": status, "reason": outcome.get("reason"),
        "axes": job.axes, "overrides": job.overrides, "config": config,
        "config_hash": digest(json.dumps(config, sort_keys=True, default=str)), "fingerprint": fingerprint,
    }
    tail = {"provenance": provenance, "started_at": started, "finished_at": time.time()}
    # The engine's keys come first and win: the cell's code cannot overwrite what identifies the cell.
    figures = {k: v for k, v in outcome.items() if k not in identity and k not in tail}
    atomic_write_json(store.path(SUMMARY), {**identity, **figures, **tail}, durable=True)
    return status
