"""Every sampling configuration of the public project (conf/sampling/) reaches generate(): the settings its
generation config and warpers hold, read back from the objects generate() built, equal the option's."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml


from .conftest import compose, run_cell

CONF = Path(__file__).resolve().parents[2] / "conf" / "sampling"
SAMPLING = sorted(p.stem for p in CONF.glob("*.yaml"))


def test_the_public_projects_configurations_are_all_there() -> None:
    assert {"greedy", "beam_search", "top_p_low_temperature"} <= set(SAMPLING)
    assert {f"top_p_sampling{i}" for i in range(1, 17)} <= set(SAMPLING)
    assert {f"min_p_sampling{i}" for i in range(1, 13)} <= set(SAMPLING)


def expected(option: dict) -> dict:
    """What generate() applies: the warpers transformers builds for these settings (none for a neutral one)."""
    sample = option["do_sample"]
    return {
        "do_sample": sample,
        "num_beams": option["num_beams"],
        "temperature": (option["temperature"] if option["temperature"] is not None else 1.0) if sample else None,
        "top_p": (option["top_p"] if option["top_p"] is not None else 1.0) if sample else None,
        "min_p": option["min_p"] if sample else None,
    }


@pytest.mark.parametrize("sampling", SAMPLING)
def test_each_sampling_configuration_reaches_generate(sampling: str, tiny) -> None:
    cfg = compose("sample_size=2", "batch_size=2", "max_new_tokens=24", "warmup=0", "repeats=1",
                  sampling=sampling)
    out = run_cell(cfg, cpus=1)
    assert out["status"] == "ok"
    assert out["metrics"]["generated_tokens"] == sum(g["generated_tokens"] for g in out["generations"]) > 0
    applied = out["applied"]
    assert {k: applied[k] for k in ("do_sample", "num_beams", "temperature", "top_p", "min_p")} == expected(
        yaml.safe_load((CONF / f"{sampling}.yaml").read_text()))
    warpers = {"TemperatureLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper"}
    assert bool(warpers & set(applied["processors"])) == (applied["do_sample"] and (
        applied["temperature"] != 1.0 or applied["top_p"] != 1.0 or applied["min_p"] is not None))


def test_a_sampling_cells_repeats_follow_their_own_seeds_and_a_greedy_cells_one(tiny) -> None:
    small = ("sample_size=2", "batch_size=2", "max_new_tokens=24", "warmup=0", "repeats=3")
    sampled = run_cell(compose(*small, sampling="top_p_sampling1"), cpus=1)["metrics"]
    seeds, digests = sampled["repeat_seeds"], sampled["texts_sha256_per_pass"]
    assert len(set(seeds)) == 3 and len(set(digests)) == 3  # three seeds, three different sets of texts
    assert len(sampled["valid_fraction"]["values"]) == 3
    greedy = run_cell(compose(*small, sampling="greedy"), cpus=1)["metrics"]
    assert greedy["repeat_seeds"] == [0, 0, 0] and len(set(greedy["texts_sha256_per_pass"])) == 1
    assert len(set(greedy["valid_fraction"]["values"])) == 1
