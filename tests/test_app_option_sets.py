"""An app job's option of its resource group, read without composing the job: a value override that reaches into
the group (`where.mem_gb=64`, `+where.qos=...`, the way a user sets a sweep's memory or QOS) is applied to a copy of
its option set's config once per distinct set of such overrides, so a run of 1,000 such jobs composes no job in the
sweep's process (issue 31, item 3), and reads what the job's own composition holds."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from molgen_grid.grid.app.option_sets import OptionSets


@pytest.fixture
def option_sets(tmp_path: Path) -> OptionSets:
    (tmp_path / "where").mkdir()
    (tmp_path / "config.yaml").write_text("defaults:\n  - _self_\n  - where: here\nlr: 0.1\nseed: 0\n")
    (tmp_path / "where" / "here.yaml").write_text("executor: local\n")
    (tmp_path / "where" / "a100.yaml").write_text("executor: slurm\npartition: a100\nmem_gb: 32\ntime_min: 60\n")
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", overrides=[], run_mode=RunMode.MULTIRUN)
        yield OptionSets(loader, master, "where")


def test_a_value_override_into_the_resource_group_is_read_without_composing_the_job(
        option_sets: OptionSets, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = [["where=a100", "where.mem_gb=64", "+where.qos=normal", f"seed={seed}"] for seed in range(5)]
    jobs += [["where=a100", f"seed={seed}"] for seed in range(2)] + [["where=here", "+where.mem_gb=8"]]
    loader = option_sets.loader
    composed = {tuple(job): OmegaConf.to_container(loader.load_sweep_config(option_sets.master, job).where,
                                                   resolve=True) for job in jobs}
    compositions = []
    load = loader.load_sweep_config
    monkeypatch.setattr(loader, "load_sweep_config", lambda *a, **k: compositions.append(a[1]) or load(*a, **k))
    read = {tuple(job): option_sets.option(job, "where") for job in jobs}
    assert read == composed
    assert read[tuple(jobs[0])] == {"executor": "slurm", "partition": "a100", "mem_gb": 64, "time_min": 60,
                                    "qos": "normal"}
    assert sorted(compositions) == [["where=a100"], ["where=here"]]  # one per option set, none per job


def test_an_override_that_cannot_apply_to_the_option_alone_leaves_the_job_to_its_composition(
        option_sets: OptionSets) -> None:
    assert option_sets.option(["where=a100", "where.mem_gb.x=1"], "where") is None
