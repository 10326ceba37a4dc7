"""The GPU paths mean what the seed meant (issue 30): the compiled static cache in the seed's grids, sampling
that says what it samples, the Hub off, flash_attention_2 without flash-attn refused before loading, the backend
probe on the cell's own cache, peak memory of the timed passes only, CUDA-graph re-records counted, and the
GPU-sharing check right in a container. What a CPU cannot show is faked, and each fake says so in its name."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import compose, generate_batch

CONF = Path(__file__).resolve().parents[2] / "molgen_grid" / "conf"
#: The experiments that reproduce the seed's KV-cache tables (phases 1, 2, 2.5 and the combinations).
SEED_KV_EXPERIMENTS = ("attention", "kv_cache_lp", "combinations", "gpu_smoke")


@pytest.mark.parametrize("experiment", SEED_KV_EXPERIMENTS)
def test_the_seeds_kv_cache_experiments_sweep_the_compiled_static_cache_beside_the_uncompiled(
        experiment: str) -> None:
    params = yaml.safe_load((CONF / "experiment" / f"{experiment}.yaml").read_text())["hydra"]["sweeper"]["params"]
    assert {"static", "static_compiled"} <= set(params["kv_cache"].split(","))
    options = {name: yaml.safe_load((CONF / "kv_cache" / f"{name}.yaml").read_text())
               for name in ("static", "static_compiled")}
    assert options["static"]["compile"] is False and options["static_compiled"]["compile"] is True


@pytest.mark.parametrize("sampling, top_k, warper", [("temperature_0_7", 0, False), ("top_p_sampling4", 50, True)])
def test_sampling_says_its_top_k_read_back_from_the_warpers_generate_built(
        sampling: str, top_k: int, warper: bool, tiny: tuple[Any, Any]) -> None:
    """temperature_0_7 samples the whole distribution (no top-k warper); an option that leaves top_k unset gets
    transformers' default cut of 50, and the read-back says so."""
    cfg = compose("max_new_tokens=8", sampling=sampling, logit_processor="none")
    applied = generate_batch(*tiny, cfg, ["CCO"]).applied
    assert applied["do_sample"] is True and applied["top_k"] == top_k
    assert ("TopKLogitsWarper" in applied["processors"]) is warper
