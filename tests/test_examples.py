"""The studies of examples/, run as a user runs them: each folder copied somewhere of its own and run from there
with `molgen-grid --config-dir .` (results/ and artifacts/ land in the copy). Each local test is a few seconds
of cells: a small slice of the example's grid, set on the command line."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, Tool, attempts
from slurm_cluster import last_job, sacct_final, wait_for_state

EXAMPLES = ROOT / "examples"
#: The SDPA study's slice: one backend every CPU has, one that a CPU refuses; on the CPU wherever the test runs.
SDPA = ["backend=math,efficient", "seq=32", "heads=2", "repeats=3", "warmup=1", "device=cpu"]
#: The command study's slice: plain decoding and four drafted tokens a step, short sequences.
COMMAND = ["draft=0,4", "temperature=1.0", "seq_len=8", "prompts=3"]


class Study(Tool):
    """The tool run from a copy of one example, on that example's config tree."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        copy = tmp_path / name
        shutil.copytree(EXAMPLES / name, copy, ignore=shutil.ignore_patterns("__pycache__", "results", "artifacts"))
        super().__init__(copy)
        self.prefix = ["--config-dir", "."]

    def summary(self, cell: str) -> dict:
        return json.loads((self.results / "default" / cell / "summary.json").read_text())


def spread(figure: dict, count: int) -> None:
    """A figure as {median, min, max, values} of `count` positive values."""
    assert len(figure["values"]) == count and all(v > 0 for v in figure["values"]), figure
    assert 0 < figure["min"] <= figure["median"] <= figure["max"], figure


def only_one_reran(study: Study, args: list[str], forced: str) -> None:
    out = study.cli(*args, "--force", forced).stdout
    assert "1 run" in out and forced in out, out
    runs = {name: len(attempts(study.results / "default" / name)) for name in study.states(*args)}
    assert runs == {name: 2 if name == forced else 1 for name in runs}, runs


def reported(study: Study, args: list[str]) -> str:
    out = study.cli("--report", *args).stdout
    assert "2 cells reported" in out, out
    folder = study.cwd / "artifacts" / "default"
    for name in ("report.md", "report.csv", "throughput.png"):
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, (name, out)
    text = (folder / "report.md").read_text()
    assert "molecule" not in text.lower() and "molecule" not in out.lower(), text
    return text


@pytest.fixture
def sdpa(tmp_path: Path) -> Study:
    return Study(tmp_path, "sdpa_kernels")


@pytest.fixture
def command(tmp_path: Path) -> Study:
    return Study(tmp_path, "command_grid")


@pytest.mark.slow  # four sweeps and a report of a study's own: 10 to 20 s
def test_sdpa_study_runs_resumes_forces_limits_and_reports(sdpa: Study) -> None:
    first = sdpa.cli(*SDPA).stdout
    assert "0 failed" in first, first
    states = sdpa.states(*SDPA)
    by_backend = {name.split("backend=")[1].split(",")[0]: name for name in states}
    assert {b: states[n] for b, n in by_backend.items()} == {"math": "done", "efficient": "unsupported"}, states
    done = sdpa.summary(by_backend["math"])
    spread(done["ms_per_call"], 3)
    assert (done["backend"], done["device"]) == ("math", "cpu")
    refused = sdpa.summary(by_backend["efficient"])
    assert refused["status"] == "unsupported" and refused["backend"] == "efficient"
    assert refused["reason"] and "\n" not in refused["reason"] and "ms_per_call" not in refused, refused

    again = sdpa.cli(*SDPA).stdout
    assert "0 to run" in again and " 0 run," in again, again
    status = sdpa.status(*SDPA)
    assert status["counts"] == {"done": 1, "unsupported": 1}, status

    only_one_reran(sdpa, SDPA, by_backend["math"])

    test_mode = sdpa.cli(*SDPA, "--limit", "1").stdout
    assert "0 failed" in test_mode, test_mode
    limited = sdpa.states(*SDPA, "--limit", "1")
    assert set(limited).isdisjoint(states) and all("repeats=1" in name for name in limited), limited
    assert sorted(limited.values()) == ["done", "unsupported"]
    spread(sdpa.summary(next(n for n, s in limited.items() if s == "done"))["ms_per_call"], 1)
    assert sdpa.states(*SDPA) == states  # the full cells are untouched
    assert len(attempts(sdpa.results / "default" / by_backend["efficient"])) == 1

    text = reported(sdpa, SDPA)
    assert "ms_per_call" in text and "backend=math" in text and "unsupported" in text


@pytest.mark.slow  # four sweeps and a report of a study's own: about 10 s
def test_command_study_runs_resumes_forces_limits_reports_and_stales_on_an_edit(command: Study) -> None:
    first = command.cli(*COMMAND).stdout
    assert "0 failed" in first, first
    states = command.states(*COMMAND)
    assert len(states) == 2 and set(states.values()) == {"done"}, states
    for name in states:
        summary = command.summary(name)
        spread(summary["ms_per_token"], 3)
        assert summary["tokens"] == 3 * 2 * 8 and summary["target_passes"] > 0, summary
        assert (command.results / "default" / name / "result.json").is_file()
    drafted = next(name for name in states if "draft=4" in name)
    assert command.summary(drafted)["tokens_per_target_pass"] > 1

    again = command.cli(*COMMAND).stdout
    assert "0 to run" in again and " 0 run," in again, again
    assert command.status(*COMMAND)["counts"] == {"done": 2}

    only_one_reran(command, COMMAND, drafted)

    command.cli(*COMMAND, "--limit", "1")
    limited = command.states(*COMMAND, "--limit", "1")
    assert set(limited).isdisjoint(states) and all("prompts=1" in name for name in limited), limited
    assert set(limited.values()) == {"done"}
    assert command.states(*COMMAND) == states

    text = reported(command, COMMAND)
    assert "ms_per_token" in text and "acceptance_rate" in text

    with (command.cwd / "bench.py").open("a") as script:
        script.write("\nEDITED = True\n")
    stale = command.status(*COMMAND)
    assert stale["counts"] == {"stale": 2}, stale
    assert all("code: bench.py" in cell["reason"] for cell in stale["cells"]), stale


def test_a_command_that_exits_non_zero_fails_its_cell_with_the_end_of_its_stderr(command: Study) -> None:
    bad = ["draft=0", "temperature=0", "seq_len=8", "prompts=1"]  # bench.py refuses a temperature of 0
    done = command.cli(*bad, check=False)
    assert done.returncode != 0 and "1 failed" in done.stdout, done.stdout
    (cell,) = command.status(*bad)["cells"]
    assert cell["state"] == "failed" and "temperature above 0" in cell["reason"], cell
    assert "exit status 2" in cell["reason"], cell


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.usefixtures("cluster")
@pytest.mark.parametrize("example, grid, partition", [
    ("sdpa_kernels", ["where=h100", "backend=math,flash", "seq=32", "heads=2", "repeats=3", "warmup=1",
                      "device=cpu"], "h100"),
    ("command_grid", ["where=a100", *COMMAND], "a100"),
])
def test_example_runs_on_the_slurm_test_cluster(tmp_path: Path, example: str, grid: list[str],
                                                partition: str) -> None:
    study = Study(tmp_path, example)
    out = study.cli(*grid).stdout
    assert "submitted array" in out, out
    cells = wait_for_state(study, grid, {"done"}, timeout=300)
    assert len(cells) == 2
    for name in cells:
        job = last_job(study, name)
        assert sacct_final(job) == [[job, partition, "COMPLETED"]]
        assert study.summary(name)["provenance"]["slurm_job_id"], name
