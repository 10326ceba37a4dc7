"""The process Nsight Compute launches for `profile=ncu` (ncu.py): the cell's first batch, once untimed to warm it,
then again with the NVTX range ncu profiles around a window of its decoding steps.

    python -m molgen_grid.bench.trackers.ncu_pass CONFIG.yaml --first-step N --steps M --window-file OUT.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from molgen_grid.bench.cell import generation_rows, load_generator, resolve_cell_device
from molgen_grid.bench.measure import StepClock
from molgen_grid.bench.passes import run_pass
from molgen_grid.bench.templates import resolve_workers
from molgen_grid.bench.trackers.ncu import RANGE


class WindowClock(StepClock):
    """The generator's step clock, which also opens the NVTX range once step `first` has chosen its token and
    closes it once step `first + steps` has (where CUDA has NVTX; on a CPU there is no kernel to profile)."""

    def __init__(self, device: torch.device, first: int, steps: int) -> None:
        super().__init__(device)
        # (StepClock's own `first` is its first token's time)
        self.opens, self.closes = first, first + steps
        self.nvtx = torch.cuda.is_available()
        #: The steps the window covered, once it opened (the batch may end before it closes).
        self.opened_at: int | None = None
        self.closed_at: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        done = super().__call__(input_ids, scores, **kwargs)
        if self.opened_at is None and self.steps == self.opens:
            self.opened_at = self.steps
            if self.nvtx:
                torch.cuda.nvtx.range_push(RANGE)
        elif self.opened_at is not None and self.closed_at is None and self.steps == self.closes:
            self.close()
        return done

    def close(self) -> None:
        """End the window here (at its last step, or where the batch ended)."""
        if self.opened_at is not None and self.closed_at is None:
            self.closed_at = self.steps
            if self.nvtx:
                torch.cuda.nvtx.range_pop()

    def covered(self) -> dict[str, Any]:
        """The window as it ran: the first and last decoding step inside it (None: it never opened)."""
        inside = None if self.opened_at is None else [self.opened_at + 1, self.closed_at]
        return {"first_step": self.opens, "steps": self.closes - self.opens, "decode_steps_profiled": inside}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--first-step", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--window-file", type=Path, required=True)
    args = parser.parse_args(argv)
    cfg = OmegaConf.load(args.config)
    _, rows = generation_rows(cfg)
    device = resolve_cell_device(str(cfg.gpu.device))
    loaded = load_generator(cfg, device, rows)
    first = loaded.workload.batches[:1]
    workers = resolve_workers(cfg.template_building, 1)
    generator = loaded.generator
    run_pass(generator, first, cfg, workers)
    generator.clock = window = WindowClock(device, args.first_step, args.steps)
    try:
        run_pass(generator, first, cfg, workers)
    finally:
        window.close()
    args.window_file.write_text(json.dumps(window.covered()))


if __name__ == "__main__":
    main()
