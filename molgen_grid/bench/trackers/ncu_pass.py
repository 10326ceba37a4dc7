"""The process Nsight Compute launches for `profile=ncu` (ncu.py): the cell's first batch, once untimed to warm it,
then inside the NVTX range ncu profiles.

    python -m molgen_grid.bench.trackers.ncu_pass CONFIG.yaml
"""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import torch
from omegaconf import OmegaConf

from molgen_grid.bench.cell import generation_rows, load_generator, resolve_cell_device
from molgen_grid.bench.passes import run_pass
from molgen_grid.bench.templates import resolve_workers
from molgen_grid.bench.trackers.ncu import RANGE


@contextlib.contextmanager
def nvtx_range(name: str) -> Iterator[None]:
    """An NVTX push/pop range where CUDA has one (on a CPU there is no kernel to profile)."""
    if not torch.cuda.is_available():
        yield
        return
    torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        torch.cuda.synchronize()
        torch.cuda.nvtx.range_pop()


def main(path: str) -> None:
    cfg = OmegaConf.load(path)
    _, rows = generation_rows(cfg)
    loaded = load_generator(cfg, resolve_cell_device(str(cfg.gpu.device)), rows)
    first = loaded.workload.batches[:1]
    workers = resolve_workers(cfg.template_building, 1)
    run_pass(loaded.generator, first, cfg, workers)
    with nvtx_range(RANGE):
        run_pass(loaded.generator, first, cfg, workers)


if __name__ == "__main__":
    main(sys.argv[1])
