"""What a result depends on, in parts, so that staleness can say which part changed.

A done cell is stale when a part of its fingerprint differs from the same part computed now:
- `config`: each config file the cell's config is made of (the primary config, the experiment, the option of
  every group), as parsed YAML less Hydra's and the engine's sections and the keys that only say how a cell is
  run (`grid.not_identity`), and the cell's own overrides: a comment or a time-limit edit stales nothing.
- `code`: the task's modules, the project modules it imports (statically, transitively, imports inside
  functions included), each as its syntax tree without docstrings: comments, docstrings and formatting stale
  nothing, and code the task never imports is not part of it.
- `inputs`: the content of the files the task reported it read (its data file, its checkpoint's files),
  hashed by content and cached by size and modification time, so a status over thousands of cells that share
  one data file reads it once, and a checkpoint's gigabytes only when they change.
- `libraries`: the versions the `grid.versions` hook reports (torch, transformers, CUDA, ...).

The engine knows nothing of what these files or libraries are: the task names them, the config names the hook.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from molgen_grid.grid.store import atomic_write_text

PARTS = ("config", "code", "inputs", "libraries")
#: Where content hashes are remembered between commands, by path, size and modification time.
HASH_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "molgen_grid" / "file-hashes.json"


def digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


# --- code ---------------------------------------------------------------------------------------------------------


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def code_hash(path: Path) -> str:
    """A hash of a module's syntax: blind to comments, docstrings and formatting."""
    tree = _without_docstrings(ast.parse(path.read_text(), str(path)))
    return digest(ast.dump(tree, annotate_fields=False, include_attributes=False))


def _imported(tree: ast.AST, module: str, is_package: bool) -> Iterable[str]:
    """Every module name an `import` or `from ... import` in the tree may name (relative ones resolved)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}".rstrip(".")
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def code_closure(task: str) -> dict[str, str]:
    """{path relative to the project package: code hash} of the task's module and every project module it
    imports, directly or not (the project package is the task's top-level package)."""
    root_name = task.split(".")[0]
    root_spec = importlib.util.find_spec(root_name)
    if root_spec is None or root_spec.origin is None:
        raise ValueError(f"grid.task {task!r}: {root_name} cannot be found")
    if not root_spec.submodule_search_locations:  # a task in a top-level module of its own
        origin = Path(root_spec.origin)
        return {origin.name: code_hash(origin)}
    root = Path(list(root_spec.submodule_search_locations)[0]).resolve()

    def file_of(name: str) -> tuple[Path, bool] | None:
        relative = Path(*name.split(".")[1:])
        for candidate, is_package in ((root / relative / "__init__.py", True), (root / f"{relative}.py", False)):
            if candidate.is_file():
                return candidate, is_package
        return None

    found: dict[str, str] = {}
    pending = [task.rsplit(".", 1)[0]]
    while pending:
        name = pending.pop()
        located = file_of(name) if name.split(".")[0] == root_name else None
        if located is None:
            continue
        path, is_package = located
        key = path.relative_to(root).as_posix()
        if key in found:
            continue
        tree = ast.parse(path.read_text(), str(path))
        found[key] = code_hash(path)
        parents = [".".join(name.split(".")[:i]) for i in range(2, name.count(".") + 1)]
        pending += parents + [n for n in _imported(tree, name, is_package) if n.split(".")[0] == root_name]
    return dict(sorted(found.items()))


# --- file contents ------------------------------------------------------------------------------------------------


@dataclass
class FileHashes:
    """Content hashes of files, remembered by (size, mtime) in a small JSON file between commands.

    A read-only or missing cache only costs re-hashing; writes are atomic and best effort.
    """

    path: Path = HASH_CACHE
    known: dict[str, list] = field(default_factory=dict)
    changed: bool = False

    def __post_init__(self) -> None:
        try:
            self.known = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.known = {}

    def of(self, file: str | Path) -> str | None:
        """The file's content hash (None when it is gone)."""
        path = Path(file)
        try:
            stat = path.stat()
        except OSError:
            return None
        key = str(path.resolve())
        seen = self.known.get(key)
        if seen and seen[0] == stat.st_size and seen[1] == stat.st_mtime_ns:
            return seen[2]
        h = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
        self.known[key] = [stat.st_size, stat.st_mtime_ns, h.hexdigest()[:16]]
        self.changed = True
        return self.known[key][2]

    def save(self) -> None:
        if not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self.known))
        except OSError:
            pass
        self.changed = False


def input_hashes(inputs: dict[str, list[str]], hashes: FileHashes) -> dict[str, dict[str, str | None]]:
    """{kind: {path: content hash}} of the files a task reported it read."""
    return {kind: {str(p): hashes.of(p) for p in paths} for kind, paths in sorted(inputs.items())}


# --- staleness ----------------------------------------------------------------------------------------------------


def _changed_keys(before: dict, now: dict) -> list[str]:
    return sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))


def _name_some(kind: str, names: list[str]) -> str:
    more = f" and {len(names) - 2} more" if len(names) > 2 else ""
    return f"{kind}: {', '.join(names[:2])}{more}"


@dataclass
class Current:
    """This plan's view of the parts that do not depend on the cell, each computed once."""

    task: str
    versions: Callable[[], dict[str, Any]]
    hashes: FileHashes = field(default_factory=FileHashes)
    _code: dict[str, str] | None = None
    _libraries: dict[str, Any] | None = None

    @property
    def code(self) -> dict[str, str]:
        if self._code is None:
            self._code = code_closure(self.task)
        return self._code

    @property
    def libraries(self) -> dict[str, Any]:
        if self._libraries is None:
            self._libraries = self.versions()
        return self._libraries

    def stale(self, stored: dict[str, Any] | None, config: dict[str, str]) -> str | None:
        """Why a result with fingerprint `stored` is stale now (None when it is not); `config` is the cell's
        config part as computed now."""
        if not isinstance(stored, dict) or set(stored) < set(PARTS):
            return "fingerprint: recorded by an older molgen_grid, without parts"
        reasons = []
        if changed := _changed_keys(stored["config"], config):
            reasons.append(_name_some("config", changed))
        if changed := _changed_keys(stored["code"], self.code):
            reasons.append(_name_some("code", changed))
        for kind, files in (stored["inputs"] or {}).items():
            changed = [Path(p).name for p, h in files.items() if self.hashes.of(p) != h]
            if changed:
                reasons.append(_name_some(kind, changed))
        for name in _changed_keys(stored["libraries"], self.libraries):
            reasons.append(f"{name} {stored['libraries'].get(name)} -> {self.libraries.get(name)}")
        return "; ".join(reasons) or None
