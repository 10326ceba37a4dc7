"""Staleness on the light study: the engine's part (config files, the task's code, its named inputs, the keep
setting) on a cell that costs nothing, beside the benchmark's own parts (its code, checkpoint and libraries:
tests/test_staleness.py). One cell runs once; each test edits one thing, reads `--status`, puts it back."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Callable, Iterator

import pytest

from conftest import Light


class Study:
    def __init__(self, base: Path) -> None:
        self.tool = Light(base / "light")
        self.data = base / "items.txt"
        self.data.write_text("one\n")
        self.args = ["variant=a", f"input={self.data}"]

    def state(self) -> tuple[str, str | None]:
        (cell,) = self.tool.status(*self.args)["cells"]
        return cell["state"], cell["reason"]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    study = Study(tmp_path_factory.mktemp("stale_light"))
    done = study.tool.cli(*study.args)
    assert "1 run" in done.stdout, done.stdout
    assert study.state() == ("done", None)
    return study


@contextlib.contextmanager
def edited(path: Path, change: Callable[[str], str]) -> Iterator[None]:
    original = path.read_bytes()
    path.write_text(change(original.decode()))
    try:
        yield
    finally:
        path.write_bytes(original)


STALES = {
    "config": ("variant/a.yaml", lambda t: t.replace("factor: 1", "factor: 5"), "config: variant.factor 1 -> 5"),
    "a new key": ("config.yaml", lambda t: t + "unused_new_key: 2\n", "config: new key unused_new_key"),
    "a removed key and a changed one": ("config.yaml", lambda t: t.replace("scale: 1.0\n", "").replace(
        "count: 3", "count: 4"), "config: count 3 -> 4, scale removed"),
    "code": ("light_task.py", lambda t: t + "\nNEW_CONSTANT = 1\n", "code: light_task.py"),
}
KEEPS = {
    "a comment in the config": ("variant/a.yaml", lambda t: t + "# a comment\n"),
    "a comment and a docstring in the code": (
        "light_task.py", lambda t: t.replace('"""The light task:', '"""The light study\'s task:') + "\n# a comment\n"),
    "the grid's description": ("experiment/default.yaml", lambda t: t.replace("Two variants", "Both variants")),
    "an option the cell does not compose": ("variant/b.yaml", lambda t: t + "only_b: 1\n"),
    "the experiment setting a key to the value it has": ("experiment/default.yaml", lambda t: t + "scale: 1.0\n"),
}


@pytest.mark.parametrize("part", sorted(STALES))
def test_an_edit_that_changes_a_result_stales_it_and_says_what(study: Study, part: str) -> None:
    relative, change, reason = STALES[part]
    with edited(study.tool.cwd / relative, change):
        assert study.state() == ("stale", reason)
    assert study.state() == ("done", None)


@pytest.mark.parametrize("what", sorted(KEEPS))
def test_an_edit_that_cannot_change_a_result_stales_nothing(study: Study, what: str) -> None:
    relative, change = KEEPS[what]
    with edited(study.tool.cwd / relative, change):
        assert study.state() == ("done", None)


def test_a_named_inputs_content(study: Study) -> None:
    with edited(study.data, lambda t: t + "two\n"):
        assert study.state() == ("stale", "data: items.txt")
    assert study.state() == ("done", None)


def test_an_input_this_host_cannot_see_is_unverifiable_not_stale(study: Study) -> None:
    """A file the task read on a node's local disk is not there on the planning host: the cell is done, and
    its status says that input could not be checked here."""
    hidden = study.data.with_name("items.txt.away")
    study.data.rename(hidden)
    try:
        assert study.state() == ("done", "unverifiable here: data: items.txt")
        plan = study.tool.cli_here("--dry-run", *study.args).stdout
        assert "0 of 1 cell would run" in plan and "left alone: 1 done" in plan, plan
    finally:
        hidden.rename(study.data)
    assert study.state() == ("done", None)


def test_keep_counts_a_stale_cell_as_done(study: Study) -> None:
    with edited(study.data, lambda t: t + "two\n"):
        kept = [*study.args, "grid.stale=keep"]
        again = study.tool.cli(*kept)
        assert "0 to run, 1 done" in again.stdout and "0 run" in again.stdout
        plain = study.tool.cli_here("--dry-run", *study.args)
        assert "1 of 1 cell would run" in plain.stdout and "(stale)" in plain.stdout


def test_accept_keeps_a_stale_result_and_says_what_it_accepted(study: Study) -> None:
    """`--accept` records the current fingerprint of a stale cell without rerunning it (the former summary kept
    in history/), says per cell which parts it accepted, and names a cell it was asked for that is not stale."""
    (cell,) = study.tool.cell_dirs()
    ran = json.loads((cell / "summary.json").read_text())
    with edited(study.tool.cwd / "config.yaml", lambda t: t + "unused_new_key: 2\n"):
        out = study.tool.cli_here(*study.args, "--accept").stdout
        assert f"{cell.name}: accepted config (config: new key unused_new_key)" in out, out
        assert "1 stale cell accepted" in out and study.state() == ("done", None)
        summary = json.loads((cell / "summary.json").read_text())
        assert summary["attempt"] == ran["attempt"] and summary["config"] == ran["config"]
        assert summary["accepted"][-1]["parts"] == ["config"]
        (kept,) = [p for p in (cell / "history").glob("*.accepted/summary.json")]
        assert json.loads(kept.read_text()) == ran
        again = study.tool.cli_here(*study.args, "--accept", "variant=a").stdout
        assert f"{cell.name}: done, not stale: nothing to accept" in again, again
    assert study.state() == ("stale", "config: unused_new_key removed")
    study.tool.cli_here(*study.args, "--accept")
    assert study.state() == ("done", None)
