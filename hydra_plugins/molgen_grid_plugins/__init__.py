"""Hydra discovers sweepers and launchers only inside the `hydra_plugins` namespace package.

These are the engine's sweeper and launcher (molgen_grid.grid), named where Hydra looks for them.
"""
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore

from molgen_grid.grid.launcher import GridLauncher as _GridLauncher
from molgen_grid.grid.launcher import GridLauncherConf
from molgen_grid.grid.sweeper import GridSweeperConf, GridSweeping


class GridLauncher(_GridLauncher):
    """molgen_grid.grid.launcher.GridLauncher."""


class GridSweeper(GridSweeping, BasicSweeper):
    """molgen_grid.grid.sweeper.GridSweeping on the BasicSweeper Hydra loaded in this scan (this module is
    executed again at each scan, after Hydra's core plugins)."""


ConfigStore.instance().store(
    group="hydra/launcher", name="grid", provider="molgen_grid",
    node=GridLauncherConf(_target_=f"{__name__}.GridLauncher"),
)
ConfigStore.instance().store(
    group="hydra/sweeper", name="grid", provider="molgen_grid",
    node=GridSweeperConf(_target_=f"{__name__}.GridSweeper"),
)
