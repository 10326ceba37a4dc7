"""A GPU node without internet (issue 30): sbatch/wheelhouse.py packs the project's dependencies, less torch and
transformers, as wheels for the node's Python; they install there with --no-index; benchmarks/gpu_smoke.sh runs
on the node's Python (MOLGEN_PYTHON) and, without CUDA, refuses in one line. The wheelhouse tests download from
the registry; `unshare -rn` (no network) stands for the node where the wheelhouse is installed and the smoke
script run."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from conftest import ROOT

OFFLINE = ["unshare", "-rn"]  # a new network namespace with no interface but lo: nothing reachable


def wheelhouse(dest: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(ROOT / "sbatch" / "wheelhouse.py"), "--dest", str(dest), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def wheels_by_name(dest: Path) -> dict[str, Path]:
    return {canonicalize_name(parse_wheel_filename(wheel.name)[0]): wheel for wheel in dest.glob("*.whl")}


@pytest.mark.slow
def test_a_wheelhouse_for_python_3_10_has_a_wheel_the_node_accepts_for_each_dependency(tmp_path: Path) -> None:
    dest = tmp_path / "wheelhouse"
    done = wheelhouse(dest, "--python-version", "3.10", "--glibc", "2.28")
    wheels = wheels_by_name(dest)
    size = sum(wheel.stat().st_size for wheel in wheels.values())
    assert done.stdout.splitlines()[-1] == (f"wheelhouse: {len(wheels)} wheels, {size / 2**20:.1f} MiB in {dest} "
                                            "for CPython 3.10, glibc 2.28 x86_64")
    print(done.stdout.splitlines()[-1])

    required = {canonicalize_name(re.split(r"[<>=!~ ;\[]", line)[0])
                for line in (dest / "requirements.txt").read_text().split()}
    assert {"hydra-core", "rdkit", "pandas", "scipy", "matplotlib", "submitit", "torchao"} <= required
    assert not required & {"torch", "transformers", "tokenizers"}  # the node's own
    assert required <= set(wheels) and "torch" not in wheels and "transformers" not in wheels
    glibc = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)] + ["manylinux2014_x86_64",
                                                                           "manylinux2010_x86_64"]
    node = {*cpython_tags((3, 10), platforms=glibc), *compatible_tags((3, 10), platforms=glibc)}
    for wheel in wheels.values():
        assert parse_wheel_filename(wheel.name)[3] & node, f"{wheel.name} does not install on CPython 3.10"
    for binary in ("rdkit", "pandas", "scipy", "numpy", "pyyaml"):  # built per Python version
        assert "-cp310-cp310-manylinux" in wheels[binary].name, wheels[binary].name
    assert wheels["antlr4-python3-runtime"].name.endswith("-py3-none-any.whl")  # an sdist on PyPI: built here


@pytest.mark.slow
def test_the_wheelhouse_installs_with_no_index_and_no_network_into_a_target_for_this_python(tmp_path: Path) -> None:
    dest, target = tmp_path / "wheelhouse", tmp_path / "site"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    done = wheelhouse(dest, "--python-version", version, "--only", "hydra-core", "tabulate")
    print(done.stdout.splitlines()[-1])
    assert (dest / "requirements.txt").read_text().split() == ["hydra-core>=1.3.2,<1.4", "tabulate>=0.9"]

    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}  # no find-links or index from this machine's pip.conf
    install = subprocess.run([*OFFLINE, sys.executable, "-m", "pip", "install", "--no-index", "--find-links",
                              str(dest), "--target", str(target), "-r", str(dest / "requirements.txt")],
                             capture_output=True, text=True, timeout=120, env=env)
    assert install.returncode == 0, install.stderr
    installed = {canonicalize_name(info.name.split("-")[0]) for info in target.glob("*.dist-info")}
    assert installed == set(wheels_by_name(dest)) >= {"hydra-core", "omegaconf", "antlr4-python3-runtime",
                                                      "pyyaml", "tabulate"}
    where = subprocess.run([sys.executable, "-c", "import hydra, yaml, antlr4, tabulate\n"
                            "for m in (hydra, yaml, antlr4, tabulate): print(m.__file__)"],
                           capture_output=True, text=True, check=True, env={**env, "PYTHONPATH": str(target)})
    assert all(line.startswith(str(target)) for line in where.stdout.split()), where.stdout


def smoke_offline(python: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOLGEN_PYTHON": str(python), "MOLGEN_VENV": "/nonexistent"}  # installs nothing
    return subprocess.run([*OFFLINE, "bash", str(ROOT / "benchmarks" / "gpu_smoke.sh")], capture_output=True,
                          text=True, timeout=120, env=env)


def test_gpu_smoke_refuses_in_one_line_on_a_machine_without_cuda_and_no_network() -> None:
    assert not torch.cuda.is_available()
    done = smoke_offline(Path(sys.executable))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"gpu_smoke: no CUDA device for {sys.executable} (torch {torch.__version__}, built for "
                           f"CUDA {torch.version.cuda}): run it on a GPU machine, or on the cluster with gpu=h100\n")


def test_gpu_smoke_refuses_in_one_line_where_the_python_has_no_torch(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    python = tmp_path / "bare" / "bin" / "python"
    done = smoke_offline(python)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"gpu_smoke: no CUDA device for {python} (ModuleNotFoundError: No module named 'torch'): "
                           "run it on a GPU machine, or on the cluster with gpu=h100\n")
