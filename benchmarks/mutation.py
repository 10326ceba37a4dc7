"""Would the suite catch a broken engine or benchmark? Break one key function at a time and run its tests.

Each mutant replaces one exact snippet of a module (it must occur once) with a plausible bug: a state read
wrongly, a fingerprint part ignored, two configurations sharing a name, a lock that does not exclude, a cell
run when it must not be, report arithmetic turned over, an option that never reaches generate(). The mutants
run in a scratch copy of the working tree (this checkout is never touched), each against the tests that guard
what it breaks; a mutant is killed when those tests fail. The unmutated copy must pass the same tests first.

    .venv/bin/python benchmarks/mutation.py            # every mutant (tens of minutes on 2 cores)
    .venv/bin/python benchmarks/mutation.py -k static  # the mutants whose name contains "static"

No mutant needs the Slurm test cluster: Slurm's states are guarded by tests/test_slurm_states.py.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    before: str
    after: str
    tests: tuple[str, ...]


def option_test(choice: str) -> str:
    """The test of one axis option (`kv_cache=static`) that must catch a mutant of how it is applied."""
    return f"tests/bench/test_axes.py::test_every_option_is_applied_or_unsupported_by_name[{choice}]"


#: Staleness: the light study's first (seconds), then the benchmark's own parts.
STALENESS = ("tests/test_staleness_light.py", "tests/test_staleness.py")
MUTANTS = [
    Mutant("state: an unsupported cell reads as done", "molgen_grid/grid/state.py",
           "return CellState(UNSUPPORTED, summary.get(\"reason\"), job_id, since)",
           "return CellState(DONE, None, job_id, since)",
           ("tests/test_report.py::test_report_numbers_from_known_repeats",)),
    Mutant("state: a stale summary reads as done", "molgen_grid/grid/state.py",
           "why = stale(summary)", "why = None", STALENESS),
    Mutant("state: a suspended job's cell reads as running", "molgen_grid/grid/executors/slurm.py",
           '    "SUSPENDED": "resume it with: scontrol resume {job}",\n', "",
           ("tests/test_slurm_states.py",)),
    Mutant("state: a cell interrupted inside a library's import reads as failed", "molgen_grid/grid/interrupts.py",
           '"interrupted": interruption(exc) is not None,',
           '"interrupted": isinstance(exc, (Interrupted, KeyboardInterrupt)),',
           ("tests/test_front_door.py::test_an_interrupt_a_library_turns_into_its_own_error_is_still_an_interrupt",)),
    # Engine behaviour tested on the light study (tests/light): a mutant each.
    Mutant("state: a killed local cell reads as starting", "molgen_grid/grid/executors/local.py",
           'if alive(int(job_id), attempt.get("host"), since, attempt.get("job_identity")) \\\n'
           '                and attempt.get("started_at") is None:',
           "if True:", ("tests/test_sweep.py::test_kill_9_mid_cell_is_never_done_and_reruns",)),
    Mutant("state: a stopped local cell is recorded as failed", "molgen_grid/grid/interrupts.py",
           '"interrupted": interruption(exc) is not None,', '"interrupted": False,',
           ("tests/test_front_door.py::test_an_interrupt_stops_the_cell_records_it_and_says_so",)),
    Mutant("state: a failing cell's error is never recorded", "molgen_grid/grid/worker.py",
           "atomic_write_json(store.path(ERROR), error_record(exc, job.attempt))  # before the lock goes",
           "pass", ("tests/test_sweep.py::test_a_failing_cell_is_recorded_and_the_sweep_goes_on",)),
    Mutant("locking: a local cell never waits for its device", "molgen_grid/grid/devices.py",
           '            waiting(f"waiting for the {device} (in use by {holder})")\n'
           "            fcntl.flock(fd, fcntl.LOCK_EX)\n", "            pass\n",
           ("tests/test_sweep.py::test_a_cell_waiting_for_its_device_says_so",)),
    Mutant("lifetime: a local cell outlives its killed sweep", "molgen_grid/grid/interrupts.py",
           "                os._exit(137)", "                return",
           ("tests/test_sweep.py::test_a_cell_does_not_outlive_its_sweep",)),
    Mutant("shared tree: results lose the group's write permission", "molgen_grid/grid/store.py",
           "os.fchmod(fd, 0o666 & ~_UMASK)", "os.fchmod(fd, 0o644)",
           ("tests/test_shared_tree.py::test_a_group_shared_tree_stays_group_writable",)),
    Mutant("test mode: --limit sets nothing", "molgen_grid/grid/sweeper.py",
           '        return [f"{key}={limit}"]', "        return []",
           ("tests/test_front_door.py::test_test_mode_is_visible_and_kept_apart",)),
    Mutant("fingerprint: the code is never compared", "molgen_grid/grid/fingerprint.py",
           'if changed := _changed_keys(stored["code"], self.code):',
           'if changed := _changed_keys(stored["code"], stored["code"]):', STALENESS),
    Mutant("fingerprint: every module hashes alike", "molgen_grid/grid/fingerprint.py",
           "return digest(ast.dump(tree, annotate_fields=False, include_attributes=False))",
           'return digest("")', STALENESS),
    Mutant("fingerprint: the config part is never compared", "molgen_grid/grid/fingerprint.py",
           'if changed := _changed_keys(stored["config"], config):',
           'if changed := _changed_keys(stored["config"], stored["config"]):', STALENESS),
    Mutant("naming: non-axis overrides left out of the name", "molgen_grid/grid/cells.py",
           "items = list(axes) + sorted(extra.items())", "items = list(axes)", ("tests/test_cells.py",)),
    Mutant("naming: long names cut without their hash", "molgen_grid/grid/cells.py",
           "name = name[: MAX_NAME_BYTES - 12] + _HASH_MARK + short_hash(name)",
           "name = name[: MAX_NAME_BYTES - 12]", ("tests/test_cells.py",)),
    Mutant("locking: a cell's lock is shared", "molgen_grid/grid/store.py",
           "_flock(fd, self._path, fcntl.LOCK_EX | fcntl.LOCK_NB)",
           "_flock(fd, self._path, fcntl.LOCK_SH | fcntl.LOCK_NB)",
           ("tests/test_cell_lock.py", "tests/test_sweep.py::test_two_concurrent_sweeps_run_each_cell_once")),
    Mutant("why-run: cells in flight run again", "molgen_grid/grid/plan.py",
           "    if state.state in IN_FLIGHT:\n        return None\n", "",
           ("tests/test_sweep.py::test_two_concurrent_sweeps_run_each_cell_once",
            "tests/test_sweep.py::test_a_cell_waiting_for_its_device_says_so")),
    Mutant("why-run: --force is ignored", "molgen_grid/grid/plan.py",
           "    if forced:\n        return FORCED\n", "",
           ("tests/test_slurm_in_flight.py::test_force_one_all_and_a_never_run_cell[local]",)),
    Mutant("why-run: done cells run again", "molgen_grid/grid/plan.py",
           "if state.state in COMPLETE or", "if state.state not in COMPLETE and",
           ("tests/test_sweep.py::test_default_grid_runs_then_skips_then_forces_one_cell",)),
    Mutant("report: lower-is-better figures not turned over", "molgen_grid/grid/statistics.py",
           "    if lower_is_better:\n        a, b = b, a\n", "", ("tests/test_statistics.py",)),
    Mutant("report: the noise mark inverted", "molgen_grid/grid/statistics.py",
           "self.p_value >= ALPHA", "self.p_value < ALPHA",
           ("tests/test_statistics.py", "tests/test_report.py::test_report_numbers_from_known_repeats")),
    Mutant("report: pair ratios turned over", "molgen_grid/grid/report/tables.py",
           'pairs[f"{figure.name}_a"] / pairs[f"{figure.name}_b"]',
           'pairs[f"{figure.name}_b"] / pairs[f"{figure.name}_a"]',
           ("tests/test_report.py::test_report_numbers_from_known_repeats",)),
    Mutant("report: the worst cell named best", "molgen_grid/grid/report/tables.py",
           "scores.idxmin() if primary.lower_is_better else scores.idxmax()",
           "scores.idxmax() if primary.lower_is_better else scores.idxmin()",
           ("tests/test_report.py::test_report_numbers_from_known_repeats",)),
    Mutant("options: kv_cache=static never passes its cache", "molgen_grid/bench/generate.py",
           'steps["cache"] = self.cache(len(batch.smiles) * self.num_beams)', "pass",
           (option_test("kv_cache=static"),)),
    Mutant("options: every attention option loads sdpa", "molgen_grid/bench/model.py",
           "attn_implementation=implementation(attention_cfg)", 'attn_implementation="sdpa"',
           (option_test("attention=eager"),)),
    Mutant("options: top_p never reaches generate()", "molgen_grid/bench/generate.py",
           "return {k: v for k, v in dict(sampling).items() if v is not None}",
           'return {k: v for k, v in dict(sampling).items() if v is not None and k != "top_p"}',
           ("tests/bench/test_sampling.py",)),
    Mutant("options: the tokenizer cache never hits", "molgen_grid/bench/templates.py",
           "                if found is not None:", "                if False:",
           (option_test("tokenizer_cache=cached"),)),
    Mutant("options: the python processor runs the tensor one", "molgen_grid/bench/constraints.py",
           '{"python": PythonTemplateProcessor,', '{"python": TensorTemplateProcessor,',
           (option_test("logit_processor=python"),)),
    Mutant("options: template building always serial", "molgen_grid/bench/templates.py",
           'return max(1, cpus if workers == "auto" else int(workers))', "return 1",
           (option_test("template_building=parallel"),)),
    Mutant("options: quantization never reaches the model", "molgen_grid/bench/quantization.py",
           "tq.quantize_(model, getattr(tq, CONFIGS[method])(**options))", "pass",
           (option_test("quantization=int8_weight_only"),)),
    Mutant("energy: a RAPL counter that wrapped is not unwound", "molgen_grid/bench/trackers/energy.py",
           "(a - b) % (top + 1)", "(a - b)", ("tests/bench/test_energy.py",)),
    Mutant("profile: the profiled pass counted among the timed ones", "molgen_grid/bench/passes.py",
           "            passes.append(run_pass(generator, workload.batches, cfg, workers))\n",
           "            passes.append(run_pass(generator, workload.batches, cfg, workers))\n"
           "            if cfg.profile.kind != \"none\" and index == 0:\n"
           "                passes.append(run_pass(generator, workload.batches, cfg, workers))\n",
           ("tests/bench/test_profile.py",)),
    Mutant("decoding: the heuristic schedule's draft length leaks into the next pass", "molgen_grid/bench/passes.py",
           "    generator.decoding.reset()\n", "",
           ("tests/bench/test_decoding.py::"
            "test_each_pass_starts_from_the_same_draft_state_under_the_heuristic_schedule",)),
    Mutant("decoding: accepted drafts not counted", "molgen_grid/bench/decoding.py",
           "counts.accepted += int(num_matches)", "counts.accepted += 0",
           ("tests/bench/test_decoding.py::test_assisted_figures_are_the_candidate_generators_counts",)),
    Mutant("decoding: the grammar processor let through to verify drafts", "molgen_grid/bench/decoding.py",
           'processor_kind == "grammar"', 'processor_kind == "no such processor"',
           ("tests/bench/test_decoding.py::test_what_assisted_decoding_cannot_run_ends_unsupported_with_the_reason",)),
    Mutant("profile: ncu's kernels counted once per metric", "molgen_grid/bench/trackers/ncu.py",
           'kernels.setdefault(row["ID"], {"name": row.get("Kernel Name", "")})[row["Metric Name"]]',
           'kernels.setdefault(row["ID"] + row["Metric Name"], {"name": row.get("Kernel Name", "")})'
           '[row["Metric Name"]]',
           ("tests/bench/test_ncu.py",)),
    Mutant("grid: a key swept beside its group leaks into the options that lack it", "molgen_grid/grid/spec.py",
           "            if group in self._swept:\n                return False\n", "",
           ("tests/test_cells.py::test_group_scoped_key_of_another_option",)),
    Mutant("report: a batch of 8 compared with the batch-1 baseline", "molgen_grid/grid/report/tables.py",
           "    within = [k for k in spec.settings.report.within if k in keys]\n    groups:",
           "    within: list[str] = []\n    groups:",
           ("tests/test_report.py::test_report_within_a_setting_compares_like_with_like",)),
]


def scratch_copy(into: Path) -> Path:
    """The working tree as git sees it (tracked and untracked, not ignored), copied."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_symlink():  # conf -> molgen_grid/conf: the tests read the tree through it
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            (into / name).symlink_to(os.readlink(source))
        elif source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[bool, float, str]:
    """(passed, seconds, last lines) of pytest over `tests` in the copy, its code first on the path."""
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p",
                           "no:logging", *tests], cwd=copy, env=env, capture_output=True, text=True)
    tail = "\n".join(done.stdout.strip().splitlines()[-3:])
    return done.returncode == 0, time.monotonic() - started, tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only the mutants whose name contains this")
    chosen = [m for m in MUTANTS if parser.parse_args().k in m.name]
    console = Console()
    with tempfile.TemporaryDirectory(prefix="molgen-mutation-") as tmp:
        copy = scratch_copy(Path(tmp))
        for mutant in chosen:
            found = (copy / mutant.path).read_text().count(mutant.before)
            if found != 1:
                console.print(f"[red]mutant {mutant.name!r}: its snippet occurs {found} times in {mutant.path}[/]")
                return 2
        guarding = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        passed, seconds, tail = run_tests(copy, guarding)
        if not passed:
            console.print(f"[red]the unmutated copy fails its tests ({seconds:.0f} s):[/]\n{tail}")
            return 2
        console.print(f"unmutated: {len(guarding)} test selections pass ({seconds:.0f} s)")
        table = Table("mutant", "killed", "seconds", "tests")
        killed = 0
        for mutant in chosen:
            path = copy / mutant.path
            original = path.read_text()
            path.write_text(original.replace(mutant.before, mutant.after))
            try:
                passed, seconds, _ = run_tests(copy, mutant.tests)
            finally:
                path.write_text(original)
            killed += not passed
            table.add_row(mutant.name, "[green]yes[/]" if not passed else "[red]SURVIVED[/]", f"{seconds:.0f}",
                          " ".join(t.split("::")[-1] for t in mutant.tests))
            console.print(f"{mutant.name}: {'killed' if not passed else 'SURVIVED'} ({seconds:.0f} s)")
        console.print(table)
        console.print(f"killed {killed} of {len(chosen)} mutants")
    return 0 if killed == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
