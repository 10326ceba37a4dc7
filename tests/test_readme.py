"""README is true to the letter: every `console` block is run, in order, and each line it shows must come out, in
that order, up to figures, ids and times (digits, and the width of tables). The Slurm test cluster's block runs in
a project of its own, on the test worker of the cluster's tests; the other blocks, in order, in another.

The commands are typed as README types them (`bash sbatch/run.sh ...`); the project is a copy of sbatch/ and
pyproject.toml using this checkout's venv (MOLGEN_VENV), so results land in the copy. Lines of the output that
README leaves out (a load warning, the best cell, a progress bar) may come between the lines it shows.

The cells are made small by configuration: a copy of the benchmark's config tree (MOLGEN_GRID_CONF) with one
timed pass and no warm-up (SMALL), so that names, lines and figures' places are README's while a cell takes
seconds, not a minute.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

BLOCK = re.compile(r"^```console\n(.*?)^```", re.S | re.M)
NUMBER = re.compile(r"\d+(?:[.,]\d+)*(?:[smhd]\b)?")
#: A word in angle brackets in README's output (`<host>`) stands for any one word.
PLACEHOLDER = re.compile(r"<[a-z]+>")
BOX_RUN = re.compile(r"([━─═])\1+")
#: The small cells' settings (a file of the config tree, a line as written there, the line in the copy): every
#: name and line README shows is the same, the cells take seconds. (The tokens stay: fewer cut the conformers
#: short, and the --compare line README shows would print NaN for valid_fraction.)
SMALL = [("config.yaml", "warmup: 1", "warmup: 0"), ("config.yaml", "repeats: 5", "repeats: 1"),
         ("experiment/default.yaml", "sample_size: 4", "sample_size: 1")]


def small_conf(into: Path) -> Path:
    """A copy of the benchmark's config tree with the SMALL settings."""
    conf = into / "conf"
    shutil.copytree(ROOT / "molgen_grid" / "conf", conf)
    for name, before, after in SMALL:
        lines = (conf / name).read_text().split("\n")
        assert lines.count(before) == 1, (name, before)
        lines[lines.index(before)] = after
        (conf / name).write_text("\n".join(lines))
    return conf


def normal(line: str) -> str:
    """A line as compared: numbers (and durations: 3m, 28s) as #, runs of table rules as one character,
    whitespace squeezed."""
    return " ".join(BOX_RUN.sub(r"\1", NUMBER.sub("#", line)).split())


def blocks(text: str) -> list[list[tuple[str, list[str]]]]:
    """Each console block's commands, each with the output lines README shows for it."""
    out: list[list[tuple[str, list[str]]]] = []
    for block in BLOCK.findall(text):
        out.append([])
        for line in block.splitlines():
            if line.startswith("$ "):
                out[-1].append((line[2:], []))
            elif line.strip() and line.strip() != "...":
                out[-1][-1][1].append(line)
    return out


def steps(text: str) -> list[tuple[str, list[str]]]:
    """(command, the output lines README shows for it) for every command of every console block."""
    return [step for block in blocks(text) for step in block]


def on_the_cluster(block: list[tuple[str, list[str]]]) -> bool:
    """Whether a block is the one that starts the Slurm test cluster and runs cells there (its cells are its
    own: no other block reads them)."""
    return any("test-cluster.sh" in command for command, _ in block)


def first_missing(shown: list[str], output: str) -> str | None:
    """The first line README shows that does not come out after the previous one (None when all do)."""
    lines = [normal(line) for line in output.splitlines()]
    at = 0
    for expected in shown:
        wanted = re.compile("".join(r"\S+" if PLACEHOLDER.fullmatch(part) else re.escape(part)
                                    for part in re.split(f"({PLACEHOLDER.pattern})", normal(expected))))
        while at < len(lines) and not wanted.fullmatch(lines[at]):
            at += 1
        if at == len(lines):
            return expected
        at += 1
    return None


def test_the_readme_blocks_parse() -> None:
    found = steps((ROOT / "README.md").read_text())
    assert len(found) >= 10 and all(command.startswith("bash sbatch/") for command, _ in found)
    assert normal("│ kv_cache=dynamic │ done  │ 8172   │ 47s │") == normal("│ kv_cache=dynamic │ done │ 9 │ 5s │")
    assert first_missing(["a 1", "c 2"], "a 7\nb\nc 3.5\n") is None and first_missing(["c", "a"], "a\nc\n") == "a"
    assert first_missing(["on node <host> (32 CPUs), age 3m"], "on node vm-7 (8 CPUs), age 28s") is None


def test_a_small_conf_changes_only_the_small_settings(tmp_path: Path) -> None:
    conf, original = small_conf(tmp_path), ROOT / "molgen_grid" / "conf"
    assert sorted(p.relative_to(conf) for p in conf.rglob("*.yaml")) == sorted(
        p.relative_to(original) for p in original.rglob("*.yaml"))
    changed = [(str(p.relative_to(conf)), a, b) for p in sorted(conf.rglob("*.yaml"))
               for a, b in zip((original / p.relative_to(conf)).read_text().splitlines(), p.read_text().splitlines())
               if a != b]
    assert changed == SMALL


def run_in_order(tmp_path: Path, commands: list[tuple[str, list[str]]]) -> None:
    """The commands, in order, in a project of their own: each exits 0 and prints the lines README shows."""
    assert commands
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(ROOT / "sbatch", project / "sbatch")
    shutil.copy2(ROOT / "pyproject.toml", project / "pyproject.toml")
    env = {**os.environ, "MOLGEN_VENV": str(Path(sys.executable).parent.parent), "COLUMNS": "200",
           "PYTHONUNBUFFERED": "1", "MOLGEN_GRID_CONF": str(small_conf(tmp_path))}
    for command, shown in commands:
        done = subprocess.run(["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True,
                              timeout=900)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"$ {command}\n{output}"
        missing = first_missing(shown, output)
        assert missing is None, f"$ {command}\nREADME shows:\n  {missing}\nit printed:\n{output}"


@pytest.mark.slow
def test_every_console_block_that_runs_on_this_machine(tmp_path: Path) -> None:
    """Every block but the Slurm cluster's, in order (a test worker of its own, beside the cluster's tests)."""
    run_in_order(tmp_path, [step for block in blocks((ROOT / "README.md").read_text())
                            if not on_the_cluster(block) for step in block])


@pytest.mark.slow
@pytest.mark.slurm
def test_the_console_block_of_the_slurm_test_cluster(tmp_path: Path, cluster: None) -> None:
    run_in_order(tmp_path, [step for block in blocks((ROOT / "README.md").read_text())
                            if on_the_cluster(block) for step in block])
