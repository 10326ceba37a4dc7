"""Where one attempt's output is: read from its record in attempts.jsonl, the one way every reader finds it.

Each executor records the files its launch writes to (a local attempt's under `<cell>/logs/<when>-<attempt>/`,
a Slurm job's under `results/<experiment>/.slurm/molgen-grid-<token>/`, submitit's naming); `--status --json`
names one of them and `--logs` shows both, so both go through `log_files`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LogFiles:
    """An attempt's stdout and stderr files (None: not launched yet, or launched before logs were recorded)."""

    stdout: Path | None
    stderr: Path | None

    def telling(self, ended_badly: bool) -> Path | None:
        """The file that says most of the attempt: submitit's stderr of one that failed or was interrupted (its
        traceback; the stdout says only "Submitted job triggered an exception"), else its stdout."""
        return self.stderr if ended_badly and self.stderr is not None else self.stdout

    def named(self) -> list[tuple[str, Path | None]]:
        return [("stdout", self.stdout), ("stderr", self.stderr)]


def log_files(attempt: dict) -> LogFiles:
    """The log files that an attempt's record names."""
    def path(key: str) -> Path | None:
        return Path(attempt[key]) if attempt.get(key) else None

    return LogFiles(path("log"), path("err_log"))
