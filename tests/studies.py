"""Studies of their own for the engine's tests: written into a temporary folder and run from it with
`--config-dir .`, as a user runs a study (the light study of tests/light, or files a test writes)."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

from conftest import ROOT, Tool

LIGHT = ROOT / "tests" / "light"


class Study(Tool):
    """A study of its own in a folder: `files` written there, the tool run from it with `--config-dir .`."""

    def __init__(self, folder: Path, files: dict[str, str] | None = None) -> None:
        super().__init__(folder)
        self.prefix = ["--config-dir", "."]
        for name, text in (files or {}).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(textwrap.dedent(text))

    def summary(self, cell: str, experiment: str = "default") -> dict:
        return json.loads((self.results / experiment / cell / "summary.json").read_text())

    def cells(self, *args: str) -> dict[str, dict]:
        return {c["cell"]: c for c in self.status(*args)["cells"]}


def light_study(folder: Path) -> Study:
    """A copy of the light study (tests/light) in `folder`, run from there."""
    shutil.copytree(LIGHT, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return Study(folder)


#: A sitecustomize that holds a process at one step of the engine (see `pause_at`).
PAUSE = """\
import functools, importlib.abc, importlib.util, os, sys, time

MODULE, ATTRIBUTE, WHEN, CALL, FLAG = {module!r}, {attribute!r}, {when!r}, {call!r}, {flag!r}
calls = []


def hold():
    open(FLAG, "w").close()
    while not os.path.exists(FLAG + ".go"):
        time.sleep(0.05)


def patch(module):
    owner = module
    *path, name = ATTRIBUTE.split(".")
    for part in path:
        owner = getattr(owner, part)
    real = getattr(owner, name)

    @functools.wraps(real)
    def paused(*args, **kwargs):
        calls.append(1)
        if WHEN == "before" and len(calls) == CALL:
            hold()
        out = real(*args, **kwargs)
        if WHEN == "after" and len(calls) == CALL:
            hold()
        return out

    setattr(owner, name, paused)


class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        real = spec.loader.exec_module

        def exec_module(module):
            real(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, Hook())
"""


def pause_at(folder: Path, module: str, attribute: str, when: str = "before", call: int = 1) -> tuple[dict, Path]:
    """An environment in which every Python process stops `before` or `after` its `call`-th call of
    `module.attribute` (a race forced at that exact step, never a sleep), and the file that says it got there:
    the test then acts (a second sweep, a signal) while the process is held, and creates `<flag>.go` to let it
    go on."""
    site = folder / "pause-site"
    site.mkdir(parents=True, exist_ok=True)
    flag = folder / f"paused-{attribute}"
    (site / "sitecustomize.py").write_text(PAUSE.format(module=module, attribute=attribute, when=when, call=call,
                                                        flag=str(flag)))
    return {"PYTHONPATH": str(site)}, flag
