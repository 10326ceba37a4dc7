"""Cells in flight on the real test cluster: queued, held, suspended, requeued in held state or running, a cell
is never submitted again (sacct's count of submissions stays the same), a held one says how to let it go on,
and `--wait` follows cells that another command submitted. The cells are the light study's: a cell stays in
flight until the test creates the file it waits for."""
from __future__ import annotations

import json
import subprocess
from typing import Iterator

import pytest

from conftest import Light, Tool, attempts, started, wait_until
from slurm_cluster import last_job, submissions, wait_for_state

pytestmark = pytest.mark.slow


@pytest.fixture
def h100_taken(cluster: None) -> Iterator[str]:
    """The test cluster's one h100 GPU held by another job, so h100 cells stay queued until it is cancelled (the
    job asks for little memory, so the node's other partitions stay free)."""
    job = subprocess.run(["sbatch", "--parsable", "-p", "h100", "--gres=gpu:h100:1", "--mem=10M", "-D", "/tmp",
                          "-o", "/dev/null", "--wrap", "sleep 900"],
                         capture_output=True, text=True, check=True).stdout.strip()
    wait_until(lambda: subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                                      text=True).stdout.strip() == "RUNNING", "the blocking job never ran")
    yield job
    subprocess.run(["scancel", job], check=False)


def scontrol(*args: str) -> None:
    subprocess.run(["scontrol", *args], check=True, capture_output=True)


def rerun_submits_nothing(tool: Tool, grid: list[str]) -> str:
    """A plain rerun of the grid: it plans nothing, and the cluster received no new job."""
    before = submissions(tool.cwd)
    again = tool.cli(*grid)
    assert ", 0 to run," in again.stdout and "submitted array" not in again.stdout, again.stdout
    assert submissions(tool.cwd) == before
    return again.stdout


@pytest.mark.slurm
def test_queued_held_suspended_requeue_held_and_running_cells_are_never_submitted_again(
        light: Light, h100_taken: str) -> None:
    tool = light
    grid = [f"wait_for={tool.go('cells')}", "where=h100", "variant=a,b"]  # in flight until the file exists
    first = tool.cli(*grid)
    assert "2 submitted" in first.stdout and len(submissions(tool.cwd)) == 1
    cells = wait_for_state(tool, grid, {"queued"})
    assert "2 queued or running" in rerun_submits_nothing(tool, grid)

    array = last_job(tool, next(iter(cells))).split("_")[0]
    scontrol("hold", array)
    held = wait_for_state(tool, grid, {"held"})
    for name, cell in held.items():
        assert cell["reason"].endswith(f"release it with: scontrol release {last_job(tool, name)}"), cell
    rerun_submits_nothing(tool, grid)

    scontrol("release", array)
    subprocess.run(["scancel", h100_taken], check=True)
    cells = wait_for_state(tool, grid, {"running"}, every=False)
    name = next(n for n, c in cells.items() if c["state"] == "running")
    job = last_job(tool, name)
    wait_until(lambda: started(tool.results / "default" / name), "the cell's code never started")
    rerun_submits_nothing(tool, grid)

    scontrol("suspend", job)
    cell = wait_until(lambda: next((c for c in tool.status(*grid)["cells"] if c["cell"] == name
                                    and c["state"] == "held"), None), "the suspended cell never read held")
    assert cell["reason"] == f"suspended: resume it with: scontrol resume {job}"
    rerun_submits_nothing(tool, grid)
    scontrol("resume", job)

    scontrol("requeuehold", job)
    cell = wait_until(lambda: next((c for c in tool.status(*grid)["cells"] if c["cell"] == name
                                    and c["state"] == "held"), None), "the requeued-held cell never read held")
    assert cell["reason"].endswith(f"release it with: scontrol release {job}"), cell
    rerun_submits_nothing(tool, grid)
    scontrol("release", job)

    tool.release("cells")
    wait_for_state(tool, grid, {"done"}, timeout=600)
    assert len(submissions(tool.cwd)) == 1
    assert all(len(attempts(tool.results / "default" / n)) == 1 for n in cells)


@pytest.mark.slurm
def test_wait_follows_cells_another_command_submitted(light: Light, h100_taken: str) -> None:
    """The cells wait for a file until the waiting command has printed its plan (both still in flight)."""
    tool = light
    grid = [f"wait_for={tool.go('cells')}", "where=h100,a100", "variant=a"]
    tool.cli(*grid)
    waiting = tool.popen(*grid, "--wait")
    wait_until(lambda: all(c["state"] != "missing" for c in tool.status(*grid)["cells"]), "nothing was submitted")
    first = next(waiting.stdout)
    tool.release("cells")
    subprocess.run(["scancel", h100_taken], check=True)
    out = first + waiting.communicate(timeout=600)[0]
    assert waiting.returncode == 0, out
    assert "experiment default: 2 cells, 0 to run, 0 done, 2 queued or running" in out
    assert out.rstrip().splitlines()[-1] == "sweep default: 2 cells: 2 done"
    assert set(tool.states(*grid).values()) == {"done"}
    # one array per partition, none from the waiting command (ended jobs show once slurmdbd has recorded them)
    assert len(wait_until(lambda: submissions(tool.cwd) if len(submissions(tool.cwd)) >= 2 else None,
                          "the cluster's accounting never listed both arrays", timeout=120)) == 2


@pytest.mark.parametrize("gpu", ["local", pytest.param("a100", marks=pytest.mark.slurm)])
def test_force_one_all_and_a_never_run_cell(light: Light, gpu: str, request: pytest.FixtureRequest) -> None:
    """--force NAME, --force=NAME (of a cell that never ran) and --force with no name, locally and on Slurm."""
    tool = light
    if gpu != "local":
        request.getfixturevalue("cluster")
    grid = [f"where={gpu}", "variant=a,b"]
    names = {next(o for o in c["overrides"] if o.startswith("variant=")): c["cell"]
             for c in tool.status(*grid)["cells"]}
    dynamic, static = names["variant=a"], names["variant=b"]

    def run(*args: str) -> str:
        out = tool.cli(*args).stdout
        if gpu != "local":
            wait_for_state(tool, grid, {"done", "missing"})
        return out

    def runs() -> tuple[int, int]:
        return tuple(len(attempts(tool.results / "default" / n)) for n in (dynamic, static))

    run(f"where={gpu}", "variant=a")
    assert runs() == (1, 0)
    forced = run(*grid, f"--force={static}")  # only the named cell: the rest of the grid is not planned
    assert "experiment default: 1 cell, 1 to run," in forced and runs() == (1, 1)
    forced = run(*grid, "--force", dynamic)
    assert "experiment default: 1 cell, 1 to run," in forced and runs() == (2, 1)
    forced = run(*grid, "--force")
    assert ", 2 to run, 0 done," in forced and runs() == (3, 2)
    assert set(tool.states(*grid).values()) == {"done"}
    assert len(list((tool.results / "default" / dynamic / "history").glob("*/summary.json"))) == 2


@pytest.mark.slurm
def test_a_cell_queued_before_an_edit_records_the_config_it_ran(light: Light, h100_taken: str) -> None:
    """A cell's process composes its config when its job starts: queued before an edit of its option and run
    after it, the cell records the edited config and the fingerprint of that config, so it reads done with the
    edit, and stale, naming the key, once the edit is undone (never done for a config it did not run)."""
    grid = ["where=h100", "variant=a"]
    light.cli(*grid)
    wait_for_state(light, grid, {"queued"})
    option = light.cwd / "variant" / "a.yaml"
    original = option.read_text()
    option.write_text(original.replace("factor: 1", "factor: 7"))
    subprocess.run(["scancel", h100_taken], check=True)
    wait_for_state(light, grid, {"done"})
    summary = json.loads((light.results / "default" / "where=h100,variant=a" / "summary.json").read_text())
    assert summary["config"]["variant"]["factor"] == 7 and summary["fingerprint"]["config"]["variant.factor"] == "7"
    option.write_text(original)
    (state,) = light.status(*grid)["cells"]
    assert (state["state"], state["reason"]) == ("stale", "config: variant.factor 7 -> 1")
