"""The `prompt_cache` axis on the embedded model: a prompt prefilled once and reused by a molecule's generations
writes the tokens each generation would have written alone, and the model really ran fewer prefills."""
from __future__ import annotations

from typing import Any

import pytest

from .conftest import compose, run_cell

#: Two molecules, three generations each.
SMALL = ["sample_size=2", "num_generations=3", "max_new_tokens=30", "warmup=0", "repeats=1"]


def one_pass(*overrides: str) -> tuple[Any, list[int], Any]:
    """One pass as a cell runs it; with the rows of every model forward that read more than one token (a
    prefill), and the generator's prompt cache."""
    import torch

    from molgen_grid.bench.cell import generation_rows, load_generator
    from molgen_grid.bench.passes import run_pass

    cfg = compose(*SMALL, *overrides)
    _, rows = generation_rows(cfg)
    loaded = load_generator(cfg, torch.device("cpu"), rows)
    generator = loaded.generator
    prefills: list[int] = []

    def count(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:
            prefills.append(ids.shape[0])

    hook = generator.model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        done = run_pass(generator, loaded.workload.batches, cfg, 1)
    finally:
        hook.remove()
    return done, prefills, generator.prompt_cache


@pytest.mark.parametrize("overrides, without, reused", [
    # batch 1: six calls of one row; each molecule's first call prefills, its two later calls reuse it
    (["batch_size=1"], [1] * 6, [1, 1]),
    # batch 2, static cache: rows (m1 m1) (m1 m2) (m2 m2); each batch's distinct prompts prefilled once
    (["batch_size=2", "kv_cache=static"], [2, 2, 2], [1, 2, 1]),
])
def test_a_reused_prompt_cache_writes_the_same_greedy_tokens_with_fewer_prefills(
        overrides: list[str], without: list[int], reused: list[int]) -> None:
    alone, alone_prefills, _ = one_pass(*overrides, "prompt_cache=none")
    shared, shared_prefills, cache = one_pass(*overrides, "prompt_cache=reuse")
    assert len(alone.texts) == 6 and all(alone.texts)
    assert shared.texts == alone.texts and shared.tokens_per_row == alone.tokens_per_row
    assert alone_prefills == without and shared_prefills == reused
    assert cache.prefilled_rows == sum(reused)
    assert shared.applied["cache"] == ("StaticCache" if "kv_cache=static" in overrides else "DynamicCache")


def test_reuse_with_a_draft_ends_unsupported_with_the_reason() -> None:
    out = run_cell(compose(*SMALL, "batch_size=1", "prompt_cache=reuse", decoding="assisted"))
    assert out["status"] == "unsupported"
    assert out["reason"].startswith("prompt_cache=reuse with assisted decoding: transformers' assisted decoding feeds")
