"""Shared fixtures of the benchmark tests: configs composed from conf/, the tiny model, tokenizers."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf

CONF = Path(__file__).resolve().parents[2] / "molgen_grid" / "conf"


def compose(*overrides: str, **choices: str) -> DictConfig:
    """The resolved config a cell receives: conf/ composed by Hydra, less the engine's `grid:` settings."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("config", overrides=[f"{g}={o}" for g, o in choices.items()] + list(overrides))
    return OmegaConf.masked_copy(cfg, [k for k in cfg if k != "grid"])


#: The sample of the default molecules that the exhaustive checks take unless `--every-molecule`: every sixth in
#: the file's order (8 of 47, short and long), as each whole generation costs about a second on one thread.
SAMPLE_STRIDE = 6


@pytest.fixture(scope="session")
def molecule_rows(request: pytest.FixtureRequest) -> slice:
    """Which of the default molecules a check over all of them takes: all with `--every-molecule`, else every
    SAMPLE_STRIDE-th."""
    return slice(None) if request.config.getoption("--every-molecule") else slice(None, None, SAMPLE_STRIDE)


@pytest.fixture(autouse=True, scope="session")
def one_thread() -> None:
    """Torch runs on one thread here: these tests check behaviour, not speed, and torch's spinning worker
    threads slow down many times over when the machine is shared with other test runs."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny() -> tuple[Any, Any]:
    """The embedded tiny model and its character tokenizer, loaded as a cell loads them."""
    import torch

    from molgen_grid.bench.model import load

    cfg = compose()
    return load(cfg.model, cfg.attention, torch.device("cpu"), torch.float32)


def generate_batch(model: Any, tokenizer: Any, cfg: DictConfig, smiles: list[str],
                   templates: list[Any] | None = None) -> Any:
    """One generate() call over `smiles` as one batch, planned and run as a cell runs its batches."""
    import torch

    from molgen_grid.bench.generate import Generator
    from molgen_grid.bench.workload import plan_workload

    workload = plan_workload(list(smiles), len(smiles), tokenizer, str(cfg.logit_processor.kind),
                             str(cfg.workload), int(cfg.max_new_tokens))
    generator = Generator(model, tokenizer, cfg, torch.device("cpu"), workload.cache_length)
    return generator.run(workload.batches[0], templates)


def run_cell(cfg: DictConfig, cpus: int = 1, folder: Path | None = None) -> dict[str, Any]:
    """The benchmark's task as the engine calls it, on a handle with a scratch directory (`folder`, to keep what
    the cell wrote there; no give-up hook: outside the engine a hang interrupts the main thread); the
    generations it wrote and the inputs it named are put beside its figures for the test to read."""
    import torch

    from molgen_grid.bench.cell import run_cell as task
    from molgen_grid.grid.task import CellHandle

    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as scratch:
        cell = CellHandle(name="test", experiment="test", dir=folder or Path(scratch), cpus=cpus)
        try:
            out = task(cfg, cell)
        finally:  # a cell takes its CPUs' worth of threads; the tests after it keep one_thread's
            torch.set_num_threads(threads)
        written = cell.dir / "results.json"
        out["generations"] = json.loads(written.read_text())["generations"] if written.exists() else []
        out["inputs"] = cell.inputs
    return out
