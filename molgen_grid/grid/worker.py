"""What runs inside a cell's own process, on this machine or on a Slurm node: compose, run, record.

The cell's process takes the cell's lock (and, for a local cell, its device's machine-wide lock), checks that
its attempt is still the cell's last and that nobody finished the cell since it was claimed (a duplicate job
exits saying so, and changes nothing), composes the cell's config from its overrides (the submitting side never
composes every cell), runs the study's task or command (task.py is the contract) and writes its outcome before
it lets the lock go: either `summary.json` (written last, atomically and durably, after the task's own files
are made durable: the cell is done) or `error.json` (the attempt failed, with the exception's class, message and
traceback tail; `interrupted` when a Ctrl-C or SIGTERM of a local run stopped it). A process killed in between
leaves neither, which the plan reads as killed. A submitit requeue (the job's time limit or a preemption) exits
the process on purpose: it is not a failure and leaves no record, the job comes back.
"""
from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from molgen_grid.grid.command_task import run_command, shown
from molgen_grid.grid.devices import device_lock, visible_devices
from molgen_grid.grid.dotted import load
from molgen_grid.grid.fingerprint import FileHashes, code_part, digest, input_hashes, library_versions
from molgen_grid.grid.interrupts import end_with_owner, error_record, interrupt_on_signals
from molgen_grid.grid.settings import code_folders, read_settings
from molgen_grid.grid.store import CONFIG, ERROR, SUMMARY, CellStore, atomic_write_json, atomic_write_text
from molgen_grid.grid.task import UNSUPPORTED, CellHandle, read_result

#: A job may start while its submitter still holds the cell's lock for an instant (its claim).
CLAIM_WAIT_S = 120.0
#: What a worker that does not run its cell returns (its attempt was superseded, or the cell finished).
SKIPPED = "skipped"
#: Sections of a composed config that are not the cell's config.
NOT_CELL = ("hydra", "grid")


@dataclass
class CellJob:
    """Everything a cell's process needs; pickled by submitit, so plain data only."""

    cell_dir: str
    experiment: str
    cell: str
    #: The attempt this job carries out (attempts.jsonl): it runs only while that attempt is the cell's last.
    attempt: str
    axes: dict[str, str]
    #: The overrides that reproduce the cell, and those that only say how it runs (time limit, ...).
    overrides: list[str]
    run_overrides: list[str]
    #: Where and how to compose its config: the config directory, primary config, and the overrides that
    #: come before the cell's own (Hydra's, the experiment's choice).
    conf_dir: str
    config_name: str
    base_overrides: list[str]
    #: The directory the sweep ran in: relative paths of the study's config are relative to it.
    project_dir: str
    fingerprint_config: dict[str, str]
    executor: str
    provenance: dict[str, Any] = field(default_factory=dict)
    #: A local cell: the sweep that started it (the cell ends when that sweep is gone, so a killed sweep
    #: leaves no orphan behind) and its device's lock (directory, device). None under Slurm.
    owner_pid: int | None = None
    device_lock: tuple[str, str] | None = None
    #: Variables the cell's process sets before it runs (None: unset), e.g. the launching shell's devices.
    environment: dict[str, str | None] = field(default_factory=dict)


def available_cpus() -> int:
    """CPUs this cell may use: Slurm's allocation when it runs under Slurm, else the machine's."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        return int(slurm)
    return len(os.sched_getaffinity(0))


def compose_cell(job: CellJob) -> DictConfig:
    """The cell's whole config (Hydra's and the engine's sections included), composed here from its overrides,
    with Hydra's runtime set so that `${hydra:runtime.cwd}` resolves to the project."""
    with initialize_config_dir(config_dir=job.conf_dir, version_base="1.3"):
        cfg = compose(job.config_name, overrides=job.base_overrides + job.overrides + job.run_overrides,
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def cell_config(cfg: DictConfig) -> dict[str, Any]:
    """The config a task receives: the study's own keys, resolved."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k not in NOT_CELL]), resolve=True)


def command_line(full: DictConfig, settings: DictConfig) -> list[str]:
    """A command cell's arguments, each interpolated against the cell's config (the engine's settings, defaults
    included, under `grid`: `${grid.command_result}` resolves)."""
    with open_dict(full):
        full.grid = settings
    return [str(a) for a in OmegaConf.to_container(full.grid.command, resolve=True)]


def superseded(job: CellJob, store: CellStore) -> str | None:
    """Why this job must not run its cell (read under the cell's lock), or None: a newer attempt was claimed
    since (it runs instead), or the cell was finished since this attempt was claimed (a duplicate job)."""
    attempts = store.attempts()
    mine = next((a for a in attempts if a.get("attempt") == job.attempt), None)
    if mine is None or attempts[-1] is not mine:
        newer = attempts[-1].get("attempt") if attempts else None
        return f"attempt {job.attempt} is no longer the cell's last (attempt {newer} is)"
    summary = store.summary()
    if summary is not None and summary.get("finished_at", 0) >= mine.get("when", 0):
        return f"the cell was finished by attempt {summary.get('attempt')} since attempt {job.attempt} was claimed"
    return None


def prepare_process(job: CellJob) -> None:
    """The cell's environment, working directory and import path, before the study's code is touched."""
    for name, value in job.environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    os.chdir(job.project_dir)
    if job.owner_pid is not None:
        end_with_owner(job.owner_pid)
        interrupt_on_signals()


@contextlib.contextmanager
def on_device(job: CellJob) -> Iterator[None]:
    """A local cell's device, alone across every sweep of the machine (a Slurm cell's device is Slurm's)."""
    if job.device_lock is None:
        yield
        return
    directory, device = job.device_lock
    with device_lock(Path(directory), device, lambda why: print(why, flush=True)):
        yield


def execute(job: CellJob) -> str:
    """Run one cell and record its outcome; its status ("ok", "unsupported", or SKIPPED when it did not run)."""
    store = CellStore(Path(job.cell_dir).parent, Path(job.cell_dir).name)
    prepare_process(job)
    with store.locked(wait_s=CLAIM_WAIT_S) as got:
        why_not = superseded(job, store) if got else f"another process holds cell {job.cell}'s lock"
        if why_not is not None:
            print(f"molgen-grid: not running cell {job.cell}: {why_not}", flush=True)
            return SKIPPED
        try:
            with on_device(job):
                store.retire_outcome()
                store.append_attempt({"update": True, "attempt": job.attempt, "started_at": time.time(),
                                      "node": socket.gethostname(), "worker_pid": os.getpid()})
                return _run(job, store)
        except SystemExit:
            raise  # submitit requeued the job (or the process was told to exit): not a failure of the cell
        except BaseException as exc:
            atomic_write_json(store.path(ERROR), error_record(exc, job.attempt))  # before the lock goes
            raise


def _run(job: CellJob, store: CellStore) -> str:
    faulthandler.enable()  # a crash in native code leaves every thread's traceback in the cell's log
    started = time.time()
    full = compose_cell(job)
    settings = read_settings(full.get("grid"))
    sys.path[:0] = [str(Path(folder).resolve()) for folder in code_folders(settings)] + [job.project_dir]
    code = code_part(settings, Path(job.project_dir))  # as it is now: a queued job may start after an edit
    config = cell_config(full)
    atomic_write_text(store.path(CONFIG), OmegaConf.to_yaml(config))
    cell = CellHandle(name=job.cell, experiment=job.experiment, dir=store.dir, cpus=available_cpus(),
                      devices=visible_devices())

    def give_up(reason: str, detail: str = "") -> None:
        """The cell's code says, from any thread, that the cell cannot run here (it hangs): record it as
        unsupported and end the process at once, cleanly, so that no executor runs it again."""
        record(job, store, settings, config, code, started, cell,
               {"status": UNSUPPORTED, "reason": reason, "detail": detail})
        os._exit(0)

    cell.give_up = give_up
    if settings.command is not None:
        argv = command_line(full, settings)
        outcome = run_command(argv, settings.command_result, cell)
        origin = f"the command {shown(argv)}"
    else:
        outcome = load(settings.task)(OmegaConf.create(config), cell)
        origin = f"grid.task {settings.task}"
    return record(job, store, settings, config, code, started, cell, outcome, origin)


def record(job: CellJob, store: CellStore, settings: Any, config: dict[str, Any], code: dict[str, str],
           started: float, cell: CellHandle, outcome: Any, origin: str = "the engine") -> str:
    """Write the cell's summary (atomically, durably, after the task's own files); returns its status."""
    status, reason, figures = read_result(outcome, origin)
    hashes = FileHashes()
    fingerprint = {"config": job.fingerprint_config, "code": code, "inputs": input_hashes(cell.inputs, hashes),
                   "libraries": library_versions(settings)}
    hashes.save()
    provenance = {**figures.pop("provenance", {}), **job.provenance, "host": socket.gethostname(),
                  "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
    identity = {
        "experiment": job.experiment, "cell": job.cell, "attempt": job.attempt, "status": status,
        "reason": reason, "axes": job.axes, "overrides": job.overrides, "config": config,
        "config_hash": digest(json.dumps(config, sort_keys=True, default=str)), "fingerprint": fingerprint,
    }
    store.make_durable()
    atomic_write_json(store.path(SUMMARY), {**identity, **figures, "provenance": provenance, "started_at": started,
                                            "finished_at": time.time()}, durable=True)
    return status
