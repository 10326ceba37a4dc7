"""A plain Hydra app: a small MLP fitted to a noisy sine with torch, a few seconds a job.

Nothing in it knows about molgen_grid: its config's defaults pick the grid launcher (two lines), which makes
each job of a multirun a cell that a rerun skips once it is done. It returns its final loss and speed, which the
launcher stores as the job's summary. torch is imported in `main`, where a job runs: the sweep's own process,
which plans the jobs, skips the done ones and shows their status, then never loads it (a second or more a command).

`EXAMPLE_HOLD_DIR` (tests only): a job whose `override_dirname` has a `<name>.hold` file there writes
`<name>.started` and waits until the hold file is gone, so that a test interrupts a sweep at a known job.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


def hold_if_asked() -> None:
    folder = os.environ.get("EXAMPLE_HOLD_DIR")
    if not folder:
        return
    name = HydraConfig.get().job.override_dirname
    hold = Path(folder) / f"{name}.hold"
    if hold.exists():
        (Path(folder) / f"{name}.started").touch()
        while hold.exists():
            time.sleep(0.1)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict:
    import torch

    hold_if_asked()
    torch.manual_seed(cfg.seed)
    x = torch.linspace(-3, 3, cfg.points).unsqueeze(1)
    y = torch.sin(x) + 0.1 * torch.randn_like(x)
    layers: list[torch.nn.Module] = []
    width = 1
    for _ in range(cfg.model.depth):
        layers += [torch.nn.Linear(width, cfg.model.width), torch.nn.Tanh()]
        width = cfg.model.width
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))
    optim = getattr(torch.optim, cfg.optim.name)(model.parameters(), lr=cfg.optim.lr)
    started = time.perf_counter()
    for _ in range(cfg.steps):
        optim.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optim.step()
    seconds = time.perf_counter() - started
    return {"loss": round(loss.item(), 6), "steps_per_s": round(cfg.steps / seconds, 1)}


if __name__ == "__main__":
    main()
