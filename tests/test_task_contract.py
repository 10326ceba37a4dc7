"""Any study on the engine (issue 17): the task contract, command cells, experiment-pinned code, and an engine
that names no key of the benchmark. Each study here is written into a temporary folder and run from it, as a
user runs a study of their own (`molgen-grid --config-dir .`)."""
from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from conftest import ROOT, wait_until
from studies import Study

#: What the engine must never name (issue 17): the benchmark's keys and words, and its `gpu` group.
PAYLOAD_WORDS = re.compile(r"\b(metrics|quality|sample_size|molecules?|tokens_per_s|gpus?)\b", re.IGNORECASE)


def test_the_engine_names_no_key_or_word_of_the_benchmark() -> None:
    """Code, comments and docstrings of molgen_grid/grid alike: the engine knows no study."""
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in sorted((ROOT / "molgen_grid" / "grid").rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1) if PAYLOAD_WORDS.search(line)]
    assert not found, "\n".join(found)


CONTRACT = {
    "config.yaml": """\
        defaults:
          - _self_
        grid:
          task: contract_task.run
        mode: figures
        """,
    "contract_task.py": """\
        def run(cfg, cell):
            if cfg.mode == "unsupported":
                return {"status": "unsupported", "reason": "no kernel for this here"}
            if cfg.mode == "list":
                return [1, 2]
            if cfg.mode == "reserved":
                return {"config": 1, "ms": 1.0}
            if cfg.mode == "not_json":
                return {"ms": {1, 2}}
            if cfg.mode == "bad_status":
                return {"status": "great"}
            if cfg.mode in ("numpy", "array", "unpicklable"):
                import threading
                import numpy as np
                if cfg.mode == "array":
                    return {"ms": np.arange(3.0), "count": np.int64(3)}
                if cfg.mode == "unpicklable":
                    return {"ms": 1.5, "lock": threading.Lock()}
                return {"ms": np.float32(1.5), "count": np.int64(3), "fits": np.bool_(True), "mean": np.array(2.5),
                        "nested": {"values": [np.float64(0.25), np.int32(7)]}, "provenance": {"seed": np.uint8(4)}}
            cell.write_json("own.json", {"cell": cell.name})
            cell.record_inputs("data", "data.txt")
            return {"ms": 1.5, "nested": {"count": 3}, "provenance": {"kernel": "k1"}}
        """,
    "data.txt": "one\n",
}


@pytest.fixture
def contract(tmp_path: Path) -> Study:
    return Study(tmp_path, CONTRACT)


def test_a_task_of_ones_own_returns_any_figures_and_is_done(contract: Study) -> None:
    """No `status`, no benchmark key: the cell is done, named by its own settings, and its summary holds the
    engine's keys, the task's figures and the task's provenance merged into the engine's."""
    first = contract.cli()
    assert "default: ok in" in first.stdout and ", ms 1.5" in first.stdout and "0 done, 1 run, 0 failed" in first.stdout
    (cell,) = contract.cells().values()
    assert cell["cell"] == "default" and cell["state"] == "done" and cell["overrides"] == []
    summary = contract.summary("default")
    assert summary["status"] == "ok" and summary["reason"] is None and summary["ms"] == 1.5
    assert summary["nested"] == {"count": 3} and "metrics" not in summary and "quality" not in summary
    assert summary["provenance"]["kernel"] == "k1" and summary["provenance"]["git_sha"] is None  # not a checkout
    assert summary["fingerprint"]["inputs"] == {"data": {str(contract.cwd / "data.txt"): summary["fingerprint"][
        "inputs"]["data"][str(contract.cwd / "data.txt")]}}
    assert json.loads((contract.results / "default" / "default" / "own.json").read_text()) == {"cell": "default"}
    again = contract.cli()
    assert "1 done, 0 run, 0 failed" in again.stdout
    (contract.cwd / "data.txt").write_text("two\n")
    (cell,) = contract.cells().values()
    assert cell["state"] == "stale" and cell["reason"] == "data: data.txt"


def test_the_reserved_form_is_unsupported_and_done(contract: Study) -> None:
    contract.cli("mode=unsupported")
    assert contract.cells("mode=unsupported")["mode=unsupported"]["state"] == "unsupported"
    assert contract.cells("mode=unsupported")["mode=unsupported"]["reason"] == "no kernel for this here"
    assert "0 run" in contract.cli("mode=unsupported").stdout


@pytest.mark.parametrize("mode, says, returned", [
    ("list", "returned list, not a mapping", [1, 2]),
    ("reserved", "returned 'config', which the engine writes", {"config": 1, "ms": 1.0}),
    ("not_json", "returned something JSON cannot hold", {"ms": {1, 2}}),
    ("bad_status", "returned status 'great'", {"status": "great"}),
])
def test_a_result_the_engine_cannot_store_fails_the_cell_saying_why(contract: Study, mode: str, says: str,
                                                                    returned: object) -> None:
    """The cell fails, and what the task returned is kept beside its error record, which names the file."""
    done = contract.cli(f"mode={mode}", check=False)
    assert done.returncode == 1 and "1 failed" in done.stdout
    (cell,) = contract.cells(f"mode={mode}").values()
    assert cell["state"] == "failed" and says in cell["reason"] and "grid.task contract_task.run" in cell["reason"]
    assert cell["reason"].endswith("what it returned is kept in returned.pkl")
    folder = contract.results / "default" / cell["cell"]
    assert not (folder / "summary.json").exists()
    assert "returned.pkl" in json.loads((folder / "error.json").read_text())["message"]
    assert pickle.loads((folder / "returned.pkl").read_bytes()) == returned


def test_numpy_scalars_and_0d_arrays_are_figures(contract: Study) -> None:
    """np.float32, np.int64, np.bool_, a 0-d array: the summary holds JSON numbers (and a bool)."""
    contract.cli("mode=numpy")
    assert contract.cells("mode=numpy")["mode=numpy"]["state"] == "done"
    summary = contract.summary("mode=numpy")
    assert (summary["ms"], summary["count"], summary["fits"], summary["mean"]) == (1.5, 3, True, 2.5)
    assert type(summary["count"]) is int and summary["nested"] == {"values": [0.25, 7]}
    assert summary["provenance"]["seed"] == 4


def test_a_larger_array_is_refused_and_what_was_returned_is_kept(contract: Study) -> None:
    """An array is no figure (which of its numbers is the result?): the cell fails, and the figures survive in
    returned.pkl; what cannot be pickled survives as its repr in returned.txt."""
    contract.cli("mode=array", check=False)
    reason = contract.cells("mode=array")["mode=array"]["reason"]
    assert "JSON cannot hold" in reason and "ndarray" in reason and "kept in returned.pkl" in reason
    kept = pickle.loads((contract.results / "default" / "mode=array" / "returned.pkl").read_bytes())
    assert kept["ms"].tolist() == [0.0, 1.0, 2.0] and kept["count"] == 3
    contract.cli("mode=unpicklable", check=False)
    reason = contract.cells("mode=unpicklable")["mode=unpicklable"]["reason"]
    assert "JSON cannot hold" in reason and reason.endswith("kept in returned.txt")
    folder = contract.results / "default" / "mode=unpicklable"
    assert not (folder / "returned.pkl").exists() and "'ms': 1.5" in (folder / "returned.txt").read_text()


def test_a_rerun_retires_every_file_of_the_previous_outcome(contract: Study) -> None:
    contract.cli()
    contract.cli("--force")
    cell = contract.results / "default" / "default"
    (old,) = (cell / "history").iterdir()
    assert sorted(p.name for p in old.iterdir()) == ["own.json", "summary.json"]
    assert (cell / "own.json").exists() and (cell / "summary.json").exists()


def test_a_study_without_test_mode_or_experiments_says_so_in_one_line(contract: Study) -> None:
    limit = contract.cli("--limit", "2", check=False)
    assert limit.returncode == 2 and "this study has no test mode" in limit.stderr and "grid.limit_key" in limit.stderr
    other = contract.cli("--experiment", "other", check=False)
    assert other.returncode == 2 and "this study has no experiment group" in other.stderr
    typo = contract.cli("grid.taks=x", check=False)
    assert typo.returncode == 2 and "grid.taks" in typo.stderr and len(typo.stderr.strip().splitlines()) == 1


BENCH = """\
    import argparse, json, os, sys, time

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int)
    parser.add_argument("--mode")
    args = parser.parse_args()
    print("bench.py starting", flush=True)
    if args.mode == "fail":
        print("something broke", file=sys.stderr)
        print("boom: the last word", file=sys.stderr)
        sys.exit(3)
    if args.mode == "binary":  # no UTF-8, more than a pipe holds, on both streams
        sys.stderr.buffer.write(b"\\xff\\xfe" * 100_000 + b"\\nthe last word after bytes\\n")
        sys.stdout.buffer.write(b"\\xff\\xfe" * 1_000 + b"\\n")
    if args.mode == "wait":
        with open("pid", "w") as handle:
            handle.write(str(os.getpid()))
        time.sleep(600)
    if args.mode != "silent":
        with open("result.json", "w") as handle:
            json.dump({"n": args.n, "ms": {"median": 2.0, "min": 1.0, "max": 3.0, "values": [1.0, 2.0, 3.0]}}, handle)
    """


@pytest.fixture
def commands(tmp_path: Path) -> Study:
    return Study(tmp_path, {
        "config.yaml": f"""\
            defaults:
              - _self_
            grid:
              command: ["{sys.executable}", "${{hydra:runtime.cwd}}/bench.py", --n, "${{n}}", --mode, "${{mode}}"]
              command_inputs: [bench.py]
              limit_key: n
            n: 3
            mode: ok
            """,
        "bench.py": BENCH})


def test_a_command_cell_runs_in_its_directory_and_its_json_is_the_summary(commands: Study) -> None:
    done = commands.cli("n=3,4")
    assert "0 done, 2 run, 0 failed" in done.stdout
    summary = commands.summary("n=4")
    assert summary["n"] == 4 and summary["ms"]["median"] == 2.0
    assert sorted(summary["fingerprint"]["code"]) == ["bench.py", "command"]
    log = Path(commands.cells("n=3,4")["n=4"]["log"]).read_text()
    assert "bench.py starting" in log
    assert "2 done, 0 run" in commands.cli("n=3,4").stdout
    limited = commands.cli("--limit", "1")
    assert "count" not in limited.stdout and "n=1" in limited.stdout and commands.summary("n=1")["n"] == 1


def test_editing_the_script_stales_its_cells_and_a_comment_does_not(commands: Study) -> None:
    commands.cli()
    script = commands.cwd / "bench.py"
    script.write_text(script.read_text() + "# a comment\n")
    assert commands.cells()["default"]["state"] == "done"
    script.write_text(script.read_text() + "EXTRA = 1\n")
    cell = commands.cells()["default"]
    assert cell["state"] == "stale" and cell["reason"] == "code: bench.py"
    changed = commands.cells("++grid.command=[python3,bench.py]")["default"]
    assert changed["state"] == "stale" and changed["reason"] == "code: bench.py, command"


@pytest.mark.parametrize("mode, says", [
    ("fail", "python bench.py ended with exit status 3: something broke | boom: the last word"),
    ("silent", "python bench.py exited 0 but wrote no result.json"),
])
def test_a_command_that_fails_fails_its_cell_with_the_end_of_its_stderr(commands: Study, mode: str,
                                                                      says: str) -> None:
    done = commands.cli(f"mode={mode}", check=False)
    assert done.returncode == 1
    (cell,) = commands.cells(f"mode={mode}").values()
    assert cell["state"] == "failed" and says in cell["reason"], cell


def test_a_command_writing_bytes_that_are_not_utf8_is_done_promptly_and_logged(commands: Study) -> None:
    """200 KB of bytes no decoder takes, on stderr (more than a pipe holds) and stdout: the cell is done, well
    before its time limit, and its log shows what came after them."""
    done = commands.cli("mode=binary", timeout=90)
    assert "0 done, 1 run, 0 failed" in done.stdout, done
    cell = commands.cells("mode=binary")["mode=binary"]
    assert cell["state"] == "done" and commands.summary("mode=binary")["n"] == 3
    out, err = Path(cell["log"]), Path(cell["log"]).with_suffix(".err")
    assert b"\xff\xfe" * 1_000 in out.read_bytes()
    shown = err.read_text()  # UTF-8 throughout: what was not is shown as U+FFFD
    assert "\ufffd" * 1_000 in shown and "the last word after bytes" in shown and "UnicodeDecodeError" not in shown


@pytest.mark.parametrize("where", ["../../../outside.json", "absolute", "logs/x.json", "."])
def test_a_command_result_that_is_not_a_file_of_the_cell_is_refused_in_one_line(commands: Study, where: str) -> None:
    """The result file is unlinked before the command runs: a path outside the cell, or one of the engine's
    own files there, is refused before anything is claimed, and nothing outside the cell is touched."""
    outside = commands.cwd / "outside.json"
    outside.write_text('{"kept": true}\n')
    name = str(outside) if where == "absolute" else where
    done = commands.cli(f"grid.command_result={name}", check=False, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done
    assert f"grid.command_result={name!r}" in done.stderr and "relative to the cell's directory" in done.stderr
    assert outside.read_text() == '{"kept": true}\n'
    assert not list(commands.results.rglob("attempts.jsonl"))


def test_the_cell_itself_never_unlinks_a_result_outside_it(tmp_path: Path) -> None:
    """Whoever runs the command (a cell launched past the sweep's check), the path is checked before the unlink."""
    from molgen_grid.errors import InputError
    from molgen_grid.grid.task import CellHandle
    from molgen_grid.grid.task.command import run_command

    (tmp_path / "cell").mkdir()
    outside = tmp_path / "outside.json"
    outside.write_text("{}\n")
    with pytest.raises(InputError, match="grid.command_result='../outside.json' is not a file inside"):
        run_command(["true"], "../outside.json", CellHandle(name="c", experiment="e", dir=tmp_path / "cell"))
    assert outside.exists()


def test_provenance_records_the_studys_own_commit_and_the_engines_version(contract: Study) -> None:
    """The study's repository is the folder the sweep ran in, not the engine's checkout; the engine is named by
    its installed version."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=contract.cwd,
                              capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "the study")
    contract.cli()
    provenance = contract.summary("default")["provenance"]
    assert provenance["git_sha"] == git("rev-parse", "HEAD") and provenance["git_dirty"] is False
    assert provenance["engine"]["version"] == metadata.version("molgen_grid")


def test_sigterm_reaches_the_command_and_the_cell_reads_interrupted(commands: Study) -> None:
    sweep = commands.popen("mode=wait")
    pid_file = commands.results / "default" / "mode=wait" / "pid"
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), "the command never started"))
    os.kill(sweep.pid, signal.SIGTERM)
    out = sweep.communicate(timeout=60)[0]
    assert sweep.returncode == 143 and "interrupted (SIGTERM)" in out
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), "the command outlived its cell", timeout=30)
    (cell,) = commands.cells("mode=wait").values()
    assert cell["state"] == "interrupted"


def test_a_killed_cell_takes_its_command_with_it(commands: Study) -> None:
    sweep = commands.popen("mode=wait")
    pid_file = commands.results / "default" / "mode=wait" / "pid"
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), "the command never started"))
    os.killpg(sweep.pid, signal.SIGKILL)  # the sweep, submitit's controller and the cell's process, not the command
    sweep.wait()
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
               "the command outlived its killed cell", timeout=30)


PINNED = {
    "config.yaml": """\
        defaults:
          - _self_
          - experiment: v1
        grid:
          task: pinned_task.run
        x: 2
        """,
    **{f"experiment/{v}.yaml": f"# @package _global_\ngrid:\n  code: experiments/{v}\nhydra:\n  sweeper:\n"
                                 "    params:\n      x: 1,2\n" for v in ("v1", "v2")},
    "pinned_task.py": "from generation import transform\n\n\ndef run(cfg, cell):\n    return {'y': transform(cfg.x)}\n",
    "experiments/v1/generation.py": "def transform(x):\n    return x * 10\n",
    "experiments/v2/generation.py": "def transform(x):\n    return x * 100\n",
}


@pytest.mark.slow  # two experiments' sweeps: about 8 s
def test_two_experiments_run_two_versions_of_one_module_side_by_side(tmp_path: Path) -> None:
    study = Study(tmp_path, PINNED)
    for name in ("v1", "v2"):
        assert "0 done, 2 run, 0 failed" in study.cli("--experiment", name).stdout
    assert [study.summary(c, "v1")["y"] for c in ("x=1", "default")] == [10, 20]
    assert [study.summary(c, "v2")["y"] for c in ("x=1", "default")] == [100, 200]
    assert "experiments/v2/generation.py" in study.summary("x=1", "v2")["fingerprint"]["code"]
    study.cli("--experiment", "v1", "--report")
    study.cli("--experiment", "v2", "--report")
    index = (tmp_path / "artifacts" / "README.md").read_text()
    assert "[report](v1/report.md)" in index and "[report](v2/report.md)" in index
    edited = tmp_path / "experiments" / "v2" / "generation.py"
    edited.write_text(edited.read_text().replace("100", "1000"))
    assert {c["state"] for c in study.status("--experiment", "v2")["cells"]} == {"stale"}
    assert {c["reason"] for c in study.status("--experiment", "v2")["cells"]} == {"code: experiments/v2/generation.py"}
    assert {c["state"] for c in study.status("--experiment", "v1")["cells"]} == {"done"}


def test_a_pinned_folder_that_holds_the_results_tree_is_one_line_before_anything_is_claimed(tmp_path: Path) -> None:
    """`grid.code: .` would make every summary written part of the code: each cell stale a second after it
    finished, rerun for ever."""
    study = Study(tmp_path, PINNED)
    done = study.cli("--experiment", "v1", "grid.code=.", check=False)
    assert done.returncode == 2, done.stdout
    assert done.stderr.strip() == ("molgen-grid: error: grid.code .: it holds the results tree (results), which "
                                   "every run writes to; pin a folder of source files only (experiments/NAME)")
    assert not any(tmp_path.rglob("attempts.jsonl"))


def test_only_source_files_of_a_pinned_folder_are_its_code(tmp_path: Path) -> None:
    """An editor's swap and backup files, caches, hidden files and a run's outputs in a pinned folder stale
    nothing; a new source file does."""
    study = Study(tmp_path, PINNED)
    assert "0 done, 2 run, 0 failed" in study.cli("--experiment", "v1").stdout
    folder = tmp_path / "experiments" / "v1"
    for name in (".generation.py.swp", "generation.py~", "#generation.py#", "out.log", "__pycache__/g.pyc",
                 ".hidden/notes.py"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("not code\n")
    assert {c["state"] for c in study.status("--experiment", "v1")["cells"]} == {"done"}
    (folder / "helpers.py").write_text("K = 1\n")
    assert {c["reason"] for c in study.status("--experiment", "v1")["cells"]} == {"code: experiments/v1/helpers.py"}


def test_in_a_git_checkout_the_files_git_tracks_are_a_pinned_folders_code(tmp_path: Path) -> None:
    """A pinned folder inside a git checkout: its tracked files (any suffix, in subfolders too) are its code, a
    file git does not track is not."""
    from molgen_grid.grid.fingerprint import source_files

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    folder = tmp_path / "experiments" / "one"
    (folder / "sub").mkdir(parents=True)
    for name in ("kernel.cu", "sub/table.dat", "scratch.dat"):
        (folder / name).write_text(name)
    git("init", "-q")
    git("add", "experiments/one/kernel.cu", "experiments/one/sub/table.dat")
    git("commit", "-q", "-m", "pinned")
    assert sorted(p.relative_to(folder).as_posix() for p in source_files(folder.resolve())) == \
        ["kernel.cu", "sub/table.dat"]
