"""Make, on a machine that reaches the package registries, a wheelhouse of the project's dependencies for a GPU
node without internet whose Python already has torch and transformers (README: "On a GPU node without
internet").

    .venv/bin/python sbatch/wheelhouse.py --python-version 3.10 [--glibc 2.28] [--dest wheelhouse] [--only NAME ...]

torch and transformers, and what they bring (read from their installed metadata here: run it with the project's
venv), are left out: the node's own builds stay untouched. Every other dependency in pyproject.toml comes as
wheels for the node's CPython version and glibc (`pip download --only-binary=:all:`); a dependency published only
as an sdist (hydra-core's antlr4-python3-runtime) is built into a wheel here first, and must be pure Python.
`DEST/requirements.txt` is the list to install on the node: `pip install --no-index --find-links DEST -r
DEST/requirements.txt`.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parent.parent
PROVIDED = ("torch", "transformers")  # the node's Python has them, built for its GPU


def node_requirements(only: list[str]) -> list[str]:
    """pyproject's dependencies less PROVIDED and what PROVIDED require; `only` (names) selects a subset."""
    brought = {canonicalize_name(name) for name in PROVIDED}
    for name in PROVIDED:
        brought |= {canonicalize_name(Requirement(line).name) for line in importlib.metadata.requires(name) or ()
                    if "extra ==" not in line}
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {canonicalize_name(Requirement(line).name): line for line in declared
              if canonicalize_name(Requirement(line).name) not in brought}
    unknown = sorted({canonicalize_name(name) for name in only} - set(wanted))
    if unknown:
        sys.exit(f"wheelhouse: --only {' '.join(unknown)}: not among the dependencies it packs "
                 f"({', '.join(sorted(wanted))})")
    return [line for name, line in wanted.items() if not only or name in {canonicalize_name(o) for o in only}]


def platforms(glibc: str, arch: str) -> list[str]:
    """Every manylinux tag a node with this glibc accepts (pip expands manylinux2014 itself, not manylinux_2_X)."""
    major, minor = (int(part) for part in glibc.split("."))
    return [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 17, -1)] + [f"manylinux2014_{arch}"]


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def build_sdist_only(requirements: Path, dest: Path) -> None:
    """Build here the wheels of what resolves only to an sdist, so that --only-binary finds them in dest."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip("install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report), "-r", str(requirements))
        for item in json.loads(report.read_text())["install"]:
            if item["download_info"]["url"].endswith(".whl"):
                continue
            name, version = item["metadata"]["name"], item["metadata"]["version"]
            pip("wheel", "--no-deps", "--quiet", "-w", tmp, f"{name}=={version}")
            (wheel,) = Path(tmp).glob("*.whl")
            if not all(tag.platform == "any" for tag in parse_wheel_filename(wheel.name)[3]):
                sys.exit(f"wheelhouse: {name} {version} has no wheel on the registry and builds {wheel.name} here, "
                         "which is not pure Python: build it on a machine like the node")
            wheel.rename(dest / wheel.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="wheelhouse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--python-version", required=True, help="the node's X.Y (python3 --version there)")
    parser.add_argument("--glibc", default="2.28", help="the node's glibc X.Y (ldd --version there)")
    parser.add_argument("--arch", default="x86_64")
    parser.add_argument("--dest", type=Path, default=ROOT / "wheelhouse")
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME",
                        help="only these dependencies (and what they bring), e.g. for a quick test")
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    requirements = args.dest / "requirements.txt"
    requirements.write_text("\n".join(node_requirements(args.only)) + "\n")
    build_sdist_only(requirements, args.dest)
    pip("download", "--only-binary=:all:", "--python-version", args.python_version,
        "--implementation", "cp", *(f"--platform={tag}" for tag in platforms(args.glibc, args.arch)),
        "--find-links", str(args.dest), "-d", str(args.dest), "-r", str(requirements))
    wheels = sorted(args.dest.glob("*.whl"))
    size = sum(wheel.stat().st_size for wheel in wheels)
    print(f"wheelhouse: {len(wheels)} wheels, {size / 2**20:.1f} MiB in {args.dest} for CPython "
          f"{args.python_version}, glibc {args.glibc} {args.arch}")


if __name__ == "__main__":
    main()
