"""The config loader Hydra's sweeper checks an app's batch with: each distinct option set composed once.

Hydra's BasicSweeper composes every job of a batch before launching it, only to see that it composes
(`Sweeper.validate_batch_is_legal`, which drops the config): about 85 ms a job, 14 minutes for 10,000 jobs. The
launcher hands the sweeper this loader instead (in the `HydraContext` they share); it raises what Hydra raises for
a job that does not compose, by option set and by distinct override (option_sets.py). The launcher and each job's
own process keep Hydra's loader: a job's config is composed in full only where it runs.
"""
from __future__ import annotations

from typing import Any, Sequence

from hydra.types import HydraContext
from omegaconf import DictConfig

from molgen_grid.grid.app.option_sets import OptionSets


class CheckingLoader:
    """Hydra's config loader, but for `load_sweep_config` of the sweep's own config: a check, not a composition."""

    def __init__(self, loader: Any, option_sets: OptionSets) -> None:
        self.loader = loader
        self.option_sets = option_sets

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: Sequence[str]) -> DictConfig:
        """The job checked; what comes back is its option set's config, the job's values not applied (the
        sweeper's check drops it; another master config gets Hydra's own composition)."""
        if master_config is not self.option_sets.master:
            return self.loader.load_sweep_config(master_config, list(sweep_overrides))
        self.option_sets.check(sweep_overrides)
        return self.option_sets.base(self.option_sets.split(sweep_overrides)[0])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


def share_checks(context: HydraContext, config: DictConfig, resources: str | None) -> tuple[HydraContext,
                                                                                              OptionSets]:
    """The launcher's own context (Hydra's loader) and option sets; the context it shares with the sweeper gets
    the checking loader."""
    loader = context.config_loader
    if isinstance(loader, CheckingLoader):  # set up again on the same context
        loader = loader.loader
    option_sets = OptionSets(loader, config, resources)
    context.config_loader = CheckingLoader(loader, option_sets)  # type: ignore[assignment]
    return HydraContext(config_loader=loader, callbacks=context.callbacks), option_sets
