"""`python -m molgen_grid [overrides]`: one cell; with `-m`, the sweep of the experiment's grid.

`--config-dir DIR` (and `--config-name NAME`) run another study's config tree instead of the benchmark's: the
tree replaces the benchmark's, it is not added to it (Hydra's own `--config-dir` adds a folder to the search
path, so the benchmark's groups would show through).

Both go through the project's own sweeper and launcher: a single run is a sweep of one cell (the experiment's
grid cleared), so it too skips a done cell, takes the cell's lock and runs in a fresh process.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from molgen_grid.errors import front_door
from molgen_grid.grid.front_door import INFO_FLAGS, MULTIRUN_FLAGS, config_tree, for_hydra, run_sweep


#: The benchmark's config tree, shipped inside the package.
PACKAGE_CONF = Path(__file__).resolve().parent / "conf"
#: The config tree a command runs; MOLGEN_GRID_CONF points at another one (a copy with more options, a study
#: of one's own), as `--config-dir` does for one command.
CONF_DIR = Path(os.environ.get("MOLGEN_GRID_CONF") or PACKAGE_CONF).resolve()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    """Hydra's own entry point, for its flags (`--cfg job`, `--help`, `--config-dir`); never called with a
    config, because every run goes through the launcher, which runs the cell's code in its own process."""


def as_sweep(argv: list[str]) -> list[str]:
    """A plain run becomes a one-cell sweep: multirun, with the experiment's grid left out."""
    if any(a in MULTIRUN_FLAGS for a in argv) or any(a.split("=")[0] in INFO_FLAGS for a in argv):
        return argv
    return [argv[0], "--multirun", "hydra.sweeper.single=true", *argv[1:]]


def run() -> None:
    argv, conf_dir, config_name = config_tree(sys.argv, CONF_DIR)
    sys.argv = as_sweep(argv)
    if for_hydra(sys.argv):
        main()
    else:
        run_sweep(conf_dir, config_name, sys.argv)


if __name__ == "__main__":
    front_door(run)
