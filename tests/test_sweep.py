"""The engine end to end: run, skip, force, resume, kill -9, concurrent sweeps, device locks.

The engine's behaviour does not depend on what a cell computes, so it is tested on the light study (tests/light:
its cells return at once, or wait for a file when a test needs one in flight); the benchmark's own cells (real
model, real RDKit molecules) are the shared done grid's and the few tests whose subject is the benchmark.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
from pathlib import Path

import pytest

from conftest import FAST, DoneGrid, Light, Tool, attempts, started, wait_until

pytestmark = pytest.mark.slow


def summaries(tool: Tool) -> dict[str, tuple[float, str]]:
    return {d.name: ((d / "summary.json").stat().st_mtime_ns, (d / "summary.json").read_text())
            for d in tool.cell_dirs() if (d / "summary.json").exists()}


def test_the_benchmark_grid_runs_real_cells(done_grid: DoneGrid) -> None:
    """The shared done grid, run once per pytest run through the front door: real benchmark cells, each with
    its figures, its generations and one attempt; FlashAttention-2 cannot run on a CPU and says so."""
    tool = done_grid.tool
    cells = tool.cell_dirs()
    assert len(cells) == 6
    for cell in cells:
        summary = json.loads((cell / "summary.json").read_text())
        assert summary["cell"] == cell.name and len(attempts(cell)) == 1
        assert summary["axes"]["kv_cache"] in {"dynamic", "static"}
        assert (cell / "config.yaml").exists()
        if summary["axes"]["attention"] == "flash_attention_2":
            assert summary["status"] == "unsupported"
            continue
        assert summary["status"] == "ok"
        assert summary["metrics"]["generated_tokens"] > 0
        assert summary["metrics"]["tokens_per_s"]["median"] > 0
        assert (cell / "results.json").exists()
        assert summary["metrics"]["load"]["other_cores"] is not None
        # no GPU here: the cell ran on the CPU, and saw the launching shell's (absent) CUDA_VISIBLE_DEVICES
        assert summary["provenance"]["device"] == "cpu"
        assert summary["provenance"]["cuda_visible_devices"] == os.environ.get("CUDA_VISIBLE_DEVICES")
    assert set(tool.states(*FAST, "attention=eager,sdpa,flash_attention_2").values()) == {"done", "unsupported"}


def test_default_grid_runs_then_skips_then_forces_one_cell(light: Light) -> None:
    tool = light
    first = tool.cli()
    assert "0 done, 2 run, 0 failed" in first.stdout
    cells = tool.cell_dirs()
    assert len(cells) == 2
    for cell in cells:
        summary = json.loads((cell / "summary.json").read_text())
        assert summary["status"] == "ok" and summary["cell"] == cell.name
        assert summary["axes"]["variant"] in {"a", "b"}
        assert summary["count"] == 3 and summary["value"]["median"] > 0
        assert (cell / "values.json").exists() and (cell / "config.yaml").exists()
        assert len(attempts(cell)) == 1

    before = summaries(tool)
    again = tool.cli()
    assert "2 done, 0 run, 0 failed" in again.stdout
    assert summaries(tool) == before

    b = next(c.name for c in cells if "variant=b" in c.name)
    forced = tool.cli("--force", b)
    assert "1 run" in forced.stdout
    after = summaries(tool)
    assert after[b] != before[b]
    assert {k: v for k, v in after.items() if k != b} == {k: v for k, v in before.items() if k != b}
    assert [len(attempts(c)) for c in cells] == [1 if c.name != b else 2 for c in cells]
    (previous,) = (tool.results / "default" / b / "history").iterdir()  # the earlier outcome, kept whole
    assert (previous / "summary.json").is_file() and (previous / "values.json").is_file()
    assert set(tool.states().values()) == {"done"}


def test_hydra_multirun_makes_two_cells_then_none(light: Light) -> None:
    tool = light
    first = tool.hydra("-m", "variant=a,b")
    assert "2 cells, 2 to run" in first.stdout
    second = tool.hydra("-m", "variant=a,b")
    assert "2 cells, 0 to run" in second.stdout and "0 run" in second.stdout
    single = tool.hydra("variant=b")
    assert "1 cell, 0 to run" in single.stdout


def test_a_plain_hydra_run_runs_exactly_one_cell(light: Light) -> None:
    """`python -m molgen_grid OVERRIDES` is one cell (the experiment's grid cleared); `-m` sweeps it."""
    tool = light
    single = tool.hydra("scale=2.0")
    assert "experiment default: 1 cell, 1 to run" in single.stdout and "1 run" in single.stdout
    (cell,) = tool.cell_dirs()
    assert "variant=a,scale=2.0" in cell.name
    swept = tool.hydra("-m", "scale=2.0")
    assert "experiment default: 2 cells, 1 to run, 1 done" in swept.stdout


def test_kill_9_mid_cell_is_never_done_and_reruns(light: Light) -> None:
    tool = light
    args = ["variant=a", f"wait_for={tool.go('a')}"]  # in flight until the file exists: killed while it runs
    sweep = tool.popen(*args)
    (cell_dir,) = wait_until(lambda: [d for d in tool.cell_dirs() if attempts(d)], "the sweep never launched its cell")
    wait_until(lambda: started(cell_dir), "the cell's code never started")
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait()
    status = wait_until(lambda: next((c for c in tool.status(*args)["cells"] if c["state"] != "running"), None),
                        "the killed cell still reads running", timeout=60)
    assert not (cell_dir / "summary.json").exists()
    assert status["state"] == "failed" and status["reason"].startswith("killed")
    tool.release("a")
    rerun = tool.cli(*args)
    assert "1 run" in rerun.stdout
    assert tool.states(*args) == {cell_dir.name: "done"}
    assert len(attempts(cell_dir)) == 2


def test_two_concurrent_sweeps_run_each_cell_once(light: Light) -> None:
    """The second sweep plans while the first one's cell is in flight (forced: the cells wait for a file
    until the second sweep has printed its plan)."""
    tool = light
    args = [f"wait_for={tool.go('both')}"]
    first = tool.popen(*args)
    wait_until(lambda: any(started(d) for d in tool.cell_dirs()), "the first sweep's cell never started")
    second = tool.popen(*args)
    planned = [next(second.stdout)]
    assert planned[0].startswith("experiment default: 2 cells, 1 to run, 0 done, 1 queued or running"), planned
    tool.release("both")
    outputs = [s.communicate(timeout=600)[0] for s in (first, second)]
    assert all(s.returncode == 0 for s in (first, second)), outputs
    cells = tool.cell_dirs()
    assert len(cells) == 2
    assert [len(attempts(c)) for c in cells] == [1, 1]
    assert set(tool.states(*args).values()) == {"done"}


def test_corrupt_or_incomplete_summary_is_failed_and_rerun(light: Light) -> None:
    tool = light
    tool.cli()
    broken, partial = tool.cell_dirs()
    (broken / "summary.json").write_text('{"status": "ok", ')
    (partial / "summary.json").write_text('{"status": "ok"}')
    status = {c["cell"]: c for c in tool.status()["cells"]}
    assert status[broken.name]["state"] == "failed" and "corrupt" in status[broken.name]["reason"]
    assert status[partial.name]["state"] == "failed" and "lacks" in status[partial.name]["reason"]
    rerun = tool.cli()
    assert "2 run" in rerun.stdout
    assert set(tool.states().values()) == {"done"}
    assert (broken / "history").is_dir()


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(light: Light) -> None:
    """One cell of two raises: that cell is failed with its error, the other one runs."""
    tool = light
    grid = ["variant=a", "fail=null,'disk on fire'"]
    done = tool.cli(*grid, check=False)
    assert done.returncode == 1
    assert "1 run, 1 failed" in done.stdout
    bad = next(c for c in tool.status(*grid)["cells"] if "fail=disk on fire" in c["overrides"])
    assert bad["state"] == "failed" and "RuntimeError" in bad["reason"] and "disk on fire" in bad["reason"]
    error = json.loads((tool.results / "default" / bad["cell"] / "error.json").read_text())
    assert error["class"] == "RuntimeError" and error["traceback"]


def test_invalid_smiles_rows_are_skipped_and_counted(tool: Tool, tmp_path: Path) -> None:
    data = tmp_path / "mols.smi"
    data.write_text("CCO ethanol\nnot_a_smiles bad\nc1ccccc1 benzene\nC1CC bad-ring\n")
    tool.cli(*FAST, "kv_cache=dynamic", f"data.path={data}", "sample_size=null")
    (cell,) = tool.cell_dirs()
    summary = json.loads((cell / "summary.json").read_text())
    assert summary["data"]["invalid_rows"] == 2
    assert summary["data"]["molecules"] == 2


def cell_processes(cell_dir: Path) -> list[int]:
    """Processes whose command line names this cell's directory (submitit's controller and task)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(cell_dir) in (proc / "cmdline").read_text().replace("\0", " "):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_cell_does_not_outlive_its_sweep(light: Light) -> None:
    tool = light
    args = ["variant=a", f"wait_for={tool.go('never')}"]
    sweep = tool.popen(*args)
    (cell_dir,) = wait_until(lambda: [d for d in tool.cell_dirs() if attempts(d)], "the sweep never launched its cell")
    wait_until(lambda: started(cell_dir), "the cell's code never started")
    os.kill(sweep.pid, signal.SIGKILL)  # the sweep alone, not its process group
    sweep.wait()
    try:
        wait_until(lambda: not cell_processes(cell_dir), "the cell's processes outlived their sweep", timeout=60)
    finally:
        tool.release("never")  # a cell that did outlive its sweep ends (it waits for this file)
    assert not (cell_dir / "summary.json").exists()
    assert tool.states(*args) == {cell_dir.name: "failed"}


def test_sweeps_of_different_grids_never_overlap_on_the_cpu(light: Light, tmp_path: Path) -> None:
    tool = light
    locks = f"grid.device_locks={tmp_path / 'locks'}"
    sweeps = [tool.popen(locks, f"variant={v}", "scale=1.0,2.0") for v in ("a", "b")]
    outputs = [s.communicate(timeout=600)[0] for s in sweeps]
    assert all(s.returncode == 0 for s in sweeps), outputs
    spans = sorted((s["started_at"], s["finished_at"]) for s in
                   (json.loads((d / "summary.json").read_text()) for d in tool.cell_dirs()))
    assert len(spans) == 4
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:])), spans


def test_a_cell_waiting_for_its_device_says_so(light: Light, tmp_path: Path) -> None:
    tool = light
    locks = tmp_path / "locks"
    locks.mkdir()
    held = open(locks / "cpu.lock", "w")
    held.write("pid 1 on a test\n")
    held.flush()
    fcntl.flock(held, fcntl.LOCK_EX)
    args = [f"grid.device_locks={locks}", "variant=a"]
    sweep = tool.popen(*args)
    lines: list[str] = []
    for line in sweep.stdout:
        lines.append(line)
        if "waiting for the cpu (in use by pid 1 on a test)" in line:
            break
    assert lines and "waiting for the cpu (in use by pid 1 on a test)" in lines[-1], lines  # not ended without
    cell = wait_until(lambda: next((c for c in tool.status(*args)["cells"] if c["reason"] == "waiting for its device"),
                                   None), "the cell never said it waits for its device")
    assert cell["state"] == "queued"
    assert not any(a.get("started_at") for a in attempts(tool.cell_dirs()[0]))  # nothing started meanwhile
    held.close()  # releases the lock
    rest = sweep.communicate(timeout=600)[0]
    assert sweep.returncode == 0 and "1 run" in rest, "".join(lines) + rest


@pytest.mark.parametrize("visible", ["7", "", None])
def test_a_local_cell_sees_the_launching_shells_gpus_faked_variable(light: Light, visible: str | None,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A faked CUDA_VISIBLE_DEVICES (no GPU here): the cell's process sees what the shell set, not submitit's
    empty list."""
    tool = light
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    if visible is not None:
        tool.extra_env["CUDA_VISIBLE_DEVICES"] = visible
    tool.cli("variant=a")
    (cell,) = tool.cell_dirs()
    summary = json.loads((cell / "summary.json").read_text())
    assert summary["cuda_visible_devices"] == visible
    assert summary["devices"] == ([visible] if visible else [])


def test_invalid_rows_are_told_on_the_console(tool: Tool, tmp_path: Path) -> None:
    data = tmp_path / "mols.smi"
    data.write_text("CCO ethanol\nnot_a_smiles bad\n")
    done = tool.cli(*FAST, "kv_cache=dynamic", f"data.path={data}")
    assert f"warning: 1 row of {data} is not a valid SMILES and is skipped (line 2: 'not_a_smiles')" in done.stdout
