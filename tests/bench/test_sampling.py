"""Every sampling configuration of the public project (conf/sampling/) runs a cell."""
from __future__ import annotations

from pathlib import Path

import pytest

from molgen_grid.bench.cell import run_cell

from .conftest import compose

SAMPLING = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "conf" / "sampling").glob("*.yaml"))


def test_the_public_projects_configurations_are_all_there() -> None:
    assert {"greedy", "beam_search", "top_p_low_temperature"} <= set(SAMPLING)
    assert {f"top_p_sampling{i}" for i in range(1, 17)} <= set(SAMPLING)
    assert {f"min_p_sampling{i}" for i in range(1, 13)} <= set(SAMPLING)


@pytest.mark.parametrize("sampling", SAMPLING)
def test_each_sampling_configuration_generates(sampling: str, tiny) -> None:
    cfg = compose("sample_size=2", "batch_size=2", "max_new_tokens=24", "warmup=0", "repeats=1",
                  sampling=sampling)
    out = run_cell(cfg, cpus=1)
    assert out["status"] == "ok"
    assert out["metrics"]["generated_tokens"] == sum(g["generated_tokens"] for g in out["generations"]) > 0
