"""run_cell end to end on the tiny model, and the combinations that cannot run here."""
from __future__ import annotations

from pathlib import Path

import pytest

from molgen_grid.bench.cell import run_cell
from molgen_grid.bench.templates import TokenizerCache, build_template
from molgen_grid.bench.tokenizer import build_tokenizer
from molgen_grid.bench.validate import ISSUE_KINDS

from .conftest import compose

FIGURES = ("tokens_per_s", "decode_tokens_per_s", "ttft_s", "chars_per_s")


@pytest.fixture
def two_molecules(tmp_path: Path) -> Path:
    """Templates of different lengths: the short row ends (EOS) while the long one goes on (padding)."""
    path = tmp_path / "two.smi"
    path.write_text("CO\nCCCCO\n")
    return path


def test_run_cell_end_to_end(two_molecules: Path) -> None:
    cfg = compose(f"data.path={two_molecules}", "sample_size=2", "batch_size=4", "num_generations=2",
                  "max_new_tokens=200", "warmup=1", "repeats=2", tokenizer_cache="cached")
    out = run_cell(cfg, cpus=2)
    assert out["status"] == "ok" and out["reason"] is None
    metrics = out["metrics"]
    for name in FIGURES:
        figure = metrics[name]
        assert set(figure) == {"median", "min", "max", "values"} and len(figure["values"]) == 2
        assert figure["min"] > 0 and figure["min"] <= figure["median"] <= figure["max"]
    assert metrics["wall_s"] > 0 and metrics["peak_rss_mb"] > 0 and metrics["peak_gpu_mem_mb"] is None
    assert metrics["template_s"]["median"] > 0 and metrics["tokenize_s"]["median"] > 0
    assert metrics["tokenizer_cache"] == {"enabled": True, "hits": 2, "misses": 2}  # each molecule twice

    tokenizer = build_tokenizer()
    expected = {s: len(build_template(s, tokenizer, TokenizerCache(False)).token_ids) + 1 for s in ("CO", "CCCCO")}
    generations = out["generations"]
    assert [g["smiles"] for g in generations] == ["CO", "CO", "CCCCO", "CCCCO"]
    # Up to and including EOS, never the padding after it (the CO rows ended early in a longer batch).
    assert [g["generated_tokens"] for g in generations] == [expected[g["smiles"]] for g in generations]
    assert metrics["generated_tokens"] == sum(expected[g["smiles"]] for g in generations)
    assert metrics["generated_tokens_per_pass"] == [metrics["generated_tokens"]] * 2

    quality = out["quality"]
    assert quality["generations"] == 4 and set(quality["issues"]) == set(ISSUE_KINDS)
    assert sum(quality["issues"].values()) + quality["valid"] == 4
    assert out["data"]["molecules"] == 2 and out["data"]["invalid_rows"] == 0
    assert set(out["provenance"]) >= {"host", "python", "torch", "transformers", "rdkit", "device", "gpu_name",
                                      "cuda"}


def test_unconstrained_sampling_and_static_cache() -> None:
    cfg = compose("sample_size=1", "batch_size=1", "max_new_tokens=12", "warmup=0", "repeats=1",
                  logit_processor="none", sampling="top_p_sampling4", kv_cache="static")
    out = run_cell(cfg, cpus=2)
    assert out["status"] == "ok"
    assert out["metrics"]["template_s"]["values"] == [0.0]
    assert 0 < out["generations"][0]["generated_tokens"] <= 12


@pytest.mark.parametrize("override, message", [
    ("attention.implementation=flash_attention_2", "FlashAttention2"),
    ("attention.sdpa_backend=cudnn", "backend"),
])
def test_combinations_that_cannot_run_are_unsupported(override: str, message: str) -> None:
    cfg = compose("sample_size=1", "batch_size=1", "max_new_tokens=4", "warmup=0", "repeats=1", override)
    out = run_cell(cfg, cpus=1)
    assert out["status"] == "unsupported" and message in out["reason"] and "\n" not in out["reason"]
