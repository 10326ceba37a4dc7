"""Staleness on the light study: the engine's part (config files, the task's code, its named inputs, the keep
setting) on a cell that costs nothing, beside the benchmark's own parts (its code, checkpoint and libraries:
tests/test_staleness.py). One cell runs once; each test edits one thing, reads `--status`, puts it back."""
from __future__ import annotations

import contextlib
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
    "config": ("variant/a.yaml", lambda t: t.replace("factor: 1", "factor: 5"), "config: variant/a.yaml"),
    "code": ("light_task.py", lambda t: t + "\nNEW_CONSTANT = 1\n", "code: light_task.py"),
}
KEEPS = {
    "a comment in the config": ("variant/a.yaml", lambda t: t + "# a comment\n"),
    "a comment and a docstring in the code": (
        "light_task.py", lambda t: t.replace('"""The light task:', '"""The light study\'s task:') + "\n# a comment\n"),
    "the grid's description": ("experiment/default.yaml", lambda t: t.replace("Two variants", "Both variants")),
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
