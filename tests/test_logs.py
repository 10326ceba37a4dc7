"""`--logs CELL [--follow] [--attempt N]`: one attempt's stdout and stderr, found as `--status --json` finds them,
on the light study (tests/light): a failed local cell, a running one followed to its end, a Slurm cell."""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from conftest import Light, attempts, started, wait_until
from slurm_cluster import last_job


def test_logs_show_the_current_attempt_and_an_earlier_one_on_request(light: Light) -> None:
    tool = light
    grid = ["variant=a", "fail=boom"]
    for _ in range(2):
        tool.cli(*grid, check=False)
    first, second = attempts(tool.cell_dirs()[0])
    (cell,) = tool.status(*grid)["cells"]
    shown = tool.cli_here("--logs", "variant=a", *grid).stdout
    head = shown.splitlines()[0]
    assert head.startswith(f"cell {cell['cell']}: attempt 2 of 2 (id {second['attempt']}), job {second['job_id']} "
                           f"(local, node "), head
    assert f"  stderr: {cell['log']}" in shown  # the file --status --json names
    assert "==> stderr <==" in shown and "RuntimeError: boom" in shown.partition("==> stderr <==")[2], shown
    earlier = tool.cli_here("--logs", "variant=a", "--attempt", "1", *grid).stdout
    assert earlier.startswith(f"cell {cell['cell']}: attempt 1 of 2 (id {first['attempt']}), job {first['job_id']}")
    assert first["err_log"] in earlier and second["err_log"] not in earlier and "RuntimeError: boom" in earlier
    beyond = tool.cli_here("--logs", "variant=a", "--attempt", "3", *grid, check=False)
    assert beyond.returncode == 2 and beyond.stderr.count("\n") == 1 and "has 2 attempts" in beyond.stderr
    several = tool.cli_here("--logs", "where=local", "variant=a,b", "fail=boom", check=False)
    assert several.returncode == 2 and several.stderr.count("\n") == 1, several.stderr
    assert "names 2 cells: where=local,variant=a,fail=boom; where=local,variant=b,fail=boom" in several.stderr


def follow_until_released(tool: Light, name: str, grid: list[str]) -> str:
    """`--logs NAME --follow` in a process of its own: the cell's own line seen while it still follows, the cell
    released (`wait_for`), and everything it printed by the time it ended by itself."""
    follower = subprocess.Popen([sys.executable, "-m", "molgen_grid.cli", *tool.prefix, "--logs", name, "--follow",
                                 *grid], cwd=tool.cwd, env=tool.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    guard = threading.Timer(300, follower.kill)  # a follower that never ends is killed: its output ends too
    guard.start()
    try:
        seen = []
        for line in follower.stdout:
            seen.append(line)
            if line.startswith("light task: waiting for"):
                break
        assert seen and seen[-1].startswith("light task: waiting for"), "".join(seen)
        assert follower.poll() is None  # still following the running cell
        tool.release("a")
        seen.append(follower.stdout.read())
        assert follower.wait() == 0, "".join(seen)
    finally:
        guard.cancel()
        follower.kill()  # no follower left behind by a failed assertion (it has ended otherwise)
        tool.release("a")  # nor a cell that waits
    return "".join(seen)


def test_logs_follow_a_running_cell_until_it_ends(light: Light) -> None:
    tool = light
    grid = ["variant=a", f"wait_for={tool.go('a')}"]
    sweep = tool.popen(*grid)
    wait_until(lambda: tool.cell_dirs() and started(tool.cell_dirs()[0]), "the cell started", timeout=60)
    followed = follow_until_released(tool, "variant=a", grid)
    assert followed.rstrip().endswith("==> attempt 1 ended: done <=="), followed
    assert sweep.wait(timeout=60) == 0


@pytest.mark.slow
@pytest.mark.usefixtures("cluster")
def test_logs_of_a_slurm_cell_name_its_job_and_follow_it_to_its_end(light: Light) -> None:
    tool = light
    grid = ["where=h100", "variant=b", f"wait_for={tool.go('a')}"]
    tool.cli(*grid)
    (name,) = tool.states(*grid)
    cell = tool.results / "default" / name
    job = last_job(tool, name)
    followed = follow_until_released(tool, "variant=b", grid)
    head = followed.splitlines()[0]
    assert head.startswith(f"cell {name}: attempt 1 of 1 (id ") and f"job {job} (slurm, partition h100" in head
    assert f".slurm/molgen-grid-{attempts(cell)[0]['submission']}/{job}_0_log.out" in followed, followed
    assert followed.rstrip().endswith("==> attempt 1 ended: done <=="), followed
    shown = tool.cli_here("--logs", "variant=b", *grid).stdout
    assert f"job_id={job}" in shown.partition("==> stdout <==")[2], shown  # the job's own log: submitit's first line
