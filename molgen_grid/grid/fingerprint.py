"""What a result depends on, in parts, so that staleness can say which part changed.

A done cell is stale when a part of its fingerprint differs from the same part computed now:
- `config`: the cell's config key by key (config_keys.py), less Hydra's and the engine's sections and the keys
  that only say how a cell is run (`grid.not_identity`): the reason names the key (`max_new_tokens 1536 -> 1024`),
  and a comment, a time-limit edit or a file the cell does not compose stales nothing.
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

from molgen_grid.grid.config_keys import changed_keys, changes
from molgen_grid.grid.state import Note
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
    return syntax_hash(ast.parse(path.read_text(), str(path)))


def syntax_hash(tree: ast.AST) -> str:
    """code_hash of a parsed module (its docstrings are taken out of `tree`)."""
    return digest(ast.dump(_without_docstrings(tree), annotate_fields=False, include_attributes=False))


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


def _module_file(base: Path, parts: list[str]) -> tuple[Path, bool] | None:
    """The file of module `parts` under `base` (a package's __init__.py, or a module file), if there is one (a
    namespace package's directory has none: its modules are found one by one)."""
    relative = Path(*parts)
    for candidate, is_package in ((base / relative / "__init__.py", True), (base / f"{relative}.py", False)):
        if candidate.is_file():
            return candidate, is_package
    return None


def _top_level(name: str, folders: list[Path]) -> Path | None:
    """Where top-level module `name` is imported from: the first of `folders` that holds it, else the
    interpreter's own path (a package's directory, or a module's file's directory)."""
    for folder in folders:
        if (folder / name / "__init__.py").is_file() or (folder / f"{name}.py").is_file() \
                or (folder / name).is_dir():
            return folder
    spec = importlib.util.find_spec(name)
    if spec is None:
        return None
    if spec.submodule_search_locations:  # a package, namespace packages (no __init__.py) included
        return Path(list(spec.submodule_search_locations)[0]).resolve().parent
    return Path(spec.origin).resolve().parent if spec.origin else None


def code_closure(task: str, folders: list[Path] = (), hashes: "FileHashes | None" = None) -> dict[str, str]:
    """{path: code hash} of the task's module and every module of the study it imports, directly or not.

    The study's modules are those of the task's top-level package (keyed relative to that package, as
    `bench/generate.py`) and any module found in `folders` (pinned code, the project directory; keyed relative
    to the folder): what the cell's process imports from there, never a library's. Each module's hash and
    imports are remembered by its size and modification time (`hashes`): a plan parses no unchanged module, while
    where each import leads is looked up anew (a module added since can shadow another).
    """
    hashes = hashes or FileHashes()
    folders = [Path(f).resolve() for f in folders]
    top = task.split(".")[0]
    task_root = _top_level(top, folders)
    if task_root is None:
        raise ValueError(f"grid.task {task!r}: module {top} cannot be found (is its folder the directory you "
                         "run from, or in grid.code?)")

    def located(name: str) -> tuple[Path, bool, Path] | None:
        """The module's file, whether it is a package, and the folder its key is relative to."""
        parts = name.split(".")
        if parts[0] == top:
            root, base = task_root, task_root / top if (task_root / top).is_dir() else task_root
        else:
            root = next((f for f in folders if (f / parts[0]).is_dir() or (f / f"{parts[0]}.py").is_file()), None)
            base = root
        found = _module_file(root, parts) if root is not None else None
        return (found[0], found[1], base) if found else None

    found: dict[str, str] = {}
    pending = [task.rsplit(".", 1)[0]]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        hit = located(name)
        if hit is None:
            continue
        path, is_package, base = hit
        found[path.relative_to(base).as_posix()], imported = hashes.module(path, name, is_package)
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        pending += parents + imported
    return dict(sorted(found.items()))


def file_hash(path: Path) -> str:
    """A Python file by its syntax (comments, docstrings and layout do not count), any other by its bytes."""
    if path.suffix == ".py":
        return code_hash(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _shown(path: Path, project: Path) -> str:
    return path.relative_to(project).as_posix() if path.is_relative_to(project) else str(path)


def files_part(paths: list[Path], project: Path) -> dict[str, str]:
    """Files by content (Python by syntax), keyed as the project names them."""
    return {_shown(path, project): file_hash(path) for path in paths if path.is_file()}


#: What counts as source in a pinned folder outside a git checkout (inside one: Python files and what git tracks).
SOURCE_SUFFIXES = frozenset({".py", ".pyx", ".pxd", ".c", ".cc", ".cpp", ".h", ".hpp", ".cu", ".cuh", ".sh",
                             ".yaml", ".yml", ".json", ".toml", ".cfg", ".ini"})


def _tracked(folder: Path) -> set[Path] | None:
    """The files git tracks under `folder`, or None when it is not in a git checkout."""
    import subprocess

    try:
        done = subprocess.run(["git", "ls-files", "-z", "."], cwd=folder, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode:
        return None
    return {folder / name for name in done.stdout.decode().split("\0") if name}  # names relative to `folder`


def _editor_or_hidden(relative: Path) -> bool:
    """A hidden file or folder, a cache, or an editor's swap or backup file: never source."""
    name = relative.name
    return any(part.startswith(".") or part == "__pycache__" for part in relative.parts) \
        or name.endswith("~") or (name.startswith("#") and name.endswith("#")) or name.endswith((".swp", ".swo"))


def source_files(folder: Path) -> list[Path]:
    """The source files of a pinned folder: Python files, and what git tracks there when the folder is in a git
    checkout, else files of SOURCE_SUFFIXES; never hidden files, caches, editor swap files or outputs."""
    tracked = _tracked(folder)
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or _editor_or_hidden(path.relative_to(folder)):
            continue
        if path.suffix == ".py" or (path in tracked if tracked is not None else path.suffix in SOURCE_SUFFIXES):
            found.append(path)
    return found


def pinned_code(folders: list[Path], project: Path, trees: dict[str, Path] | None = None,
                hashes: "FileHashes | None" = None) -> dict[str, str]:
    """The source files of the experiment's pinned folders (`grid.code`), keyed as the project names them,
    hashed as file_hash does and cached by size and modification time. A folder that holds one of `trees` (the
    results or artifacts tree, which every run writes to) is refused: its cells would be stale a second after
    they finished, and rerun for ever."""
    hashes = hashes or FileHashes()
    out = {}
    for folder in folders:
        shown = _shown(folder, project)
        if not folder.is_dir():
            raise ValueError(f"grid.code {shown}: no such folder")
        for setting, tree in (trees or {}).items():
            if tree.resolve().is_relative_to(folder):
                raise ValueError(f"grid.code {shown}: it holds the {setting} tree ({_shown(tree, project)}), which "
                                 f"every run writes to; pin a folder of source files only (experiments/NAME)")
        for path in source_files(folder):
            out[_shown(path, project)] = hashes.of(path, syntax=path.suffix == ".py")
    hashes.save()
    return out


def code_part(settings: Any, project: Path, hashes: "FileHashes | None" = None) -> dict[str, str]:
    """The code part of a cell's fingerprint: the task's modules (code_closure), or the command as written and
    its inputs; and the pinned folders."""
    from molgen_grid.grid.settings import code_folders

    hashes = hashes or FileHashes()
    project = project.resolve()
    folders = [(project / f).resolve() for f in code_folders(settings)]
    trees = {"results": project / settings.results_dir, "artifacts": project / settings.artifacts_dir}
    if settings.get("task"):
        code = code_closure(settings.task, folders + [project], hashes)
        code = {k: v for k, v in code.items()
                if not any((f / k).is_file() for f in folders)}  # listed below with their folder
    else:
        from omegaconf import OmegaConf

        code = {"command": digest(json.dumps(OmegaConf.to_container(settings.command, resolve=False)))}
        for name in settings.command_inputs:
            path = (project / str(name)).resolve()
            if not path.is_file():
                raise ValueError(f"grid.command_inputs: {name} is not a file (relative paths are relative to "
                                 f"{project})")
            code[_shown(path, project)] = file_hash(path)
    return dict(sorted({**code, **pinned_code(folders, project, trees, hashes)}.items()))


def library_versions(settings: Any) -> dict[str, Any]:
    """The versions a result depends on (`grid.versions`): a hook's answer, or each named distribution's
    installed version (None when it is not installed)."""
    versions = settings.get("versions")
    if versions is None:
        return {}
    if isinstance(versions, str):
        from molgen_grid.grid.dotted import load

        return load(versions)()
    from importlib import metadata

    out: dict[str, Any] = {}
    for name in versions:
        try:
            out[str(name)] = metadata.version(str(name))
        except metadata.PackageNotFoundError:
            out[str(name)] = None
    return out


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

    def of(self, file: str | Path, syntax: bool = False) -> str | None:
        """The file's content hash, or with `syntax` a Python file's code_hash (None when it is gone)."""
        path = Path(file)
        try:
            stat = path.stat()
        except OSError:
            return None
        key = str(path.resolve()) + ("#syntax" if syntax else "")
        seen = self.known.get(key)
        if seen and seen[0] == stat.st_size and seen[1] == stat.st_mtime_ns:
            return seen[2]
        if syntax:
            found = code_hash(path)
        else:
            h = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    h.update(block)
            found = h.hexdigest()[:16]
        self.known[key] = [stat.st_size, stat.st_mtime_ns, found]
        self.changed = True
        return found

    def module(self, path: Path, name: str, is_package: bool) -> tuple[str, list[str]]:
        """A module's code_hash and every module name its imports may name (`_imported`), parsed once per
        size and modification time. `path` is taken as given (code_closure's are resolved)."""
        stat = path.stat()
        key = f"{path}#module:{name}:{int(is_package)}"
        seen = self.known.get(key)
        if seen and seen[0] == stat.st_size and seen[1] == stat.st_mtime_ns and len(seen) == 4:
            return seen[2], seen[3]
        tree = ast.parse(path.read_text(), str(path))
        imported = list(dict.fromkeys(_imported(tree, name, is_package)))
        found = syntax_hash(tree)
        self.known[key] = [stat.st_size, stat.st_mtime_ns, found, imported]
        self.changed = True
        return found, imported

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
    """The names whose values differ, a name that one side lacks counting as null (a library not installed)."""
    return [k for k in changed_keys(before, now) if before.get(k) != now.get(k)]


def _by_file(config: dict) -> bool:
    """Whether a config part was recorded by an older molgen_grid, as one hash per config file."""
    return "overrides" in config and all(k == "overrides" or k.endswith(".yaml") for k in config)


def _name_some(kind: str, names: list[str], count: int | None = None) -> str:
    """The first two names and how many more (`count`: how many there are, where only two were made)."""
    count = len(names) if count is None else count
    more = f" and {count - 2} more" if count > 2 else ""
    return f"{kind}: {', '.join(names[:2])}{more}"


@dataclass
class Current:
    """This plan's view of the parts that do not depend on the cell, each computed once: the code (what the
    cells' kind of work covers, `code_of`) and the library versions."""

    code_of: Callable[[], dict[str, str]]
    libraries_of: Callable[[], dict[str, Any]] = dict
    hashes: FileHashes = field(default_factory=FileHashes)
    _code: dict[str, str] | None = None
    _libraries: dict[str, Any] | None = None

    @classmethod
    def of_study(cls, settings: Any, project: Path) -> "Current":
        """A study's: its task's modules or its command and inputs, its pinned folders (code_part)."""
        hashes = FileHashes()
        return cls(lambda: code_part(settings, project, hashes), lambda: library_versions(settings), hashes)

    @property
    def code(self) -> dict[str, str]:
        if self._code is None:
            self._code = self.code_of()
        return self._code

    @property
    def libraries(self) -> dict[str, Any]:
        if self._libraries is None:
            self._libraries = self.libraries_of()
        return self._libraries

    def stale(self, stored: dict[str, Any] | None, config: dict[str, str]) -> str | None:
        """Why a result with fingerprint `stored` is stale now (None when it is not); `config` is the cell's
        config part as computed now. An input that cannot be read here (on a node's local disk where the cell
        ran) cannot be checked: it stales nothing, and the cell's done state says so (a Note)."""
        if not isinstance(stored, dict) or not set(PARTS) <= set(stored):
            return "fingerprint: recorded by an older molgen_grid, without parts"
        reasons = []
        if _by_file(stored["config"]):
            reasons.append("config: recorded file by file by an older molgen_grid (--accept keeps the result)")
        elif changed := changed_keys(stored["config"], config):
            reasons.append(_name_some("config", changes(stored["config"], config, changed[:2]), len(changed)))
        if changed := _changed_keys(stored["code"], self.code):
            reasons.append(_name_some("code", changed))
        unseen = []
        for kind, files in (stored["inputs"] or {}).items():
            now = {p: self.hashes.of(p) for p in files}
            changed = [Path(p).name for p, h in files.items() if now[p] != h and (now[p] is not None or h is None)]
            if changed:
                reasons.append(_name_some(kind, changed))
            if missing := [Path(p).name for p, h in files.items() if now[p] is None and h is not None]:
                unseen.append(_name_some(kind, missing))
        for name in _changed_keys(stored["libraries"], self.libraries):
            reasons.append(f"{name} {stored['libraries'].get(name)} -> {self.libraries.get(name)}")
        if unseen and not reasons:
            return Note(f"unverifiable here: {'; '.join(unseen)}")
        return "; ".join(reasons) or None
