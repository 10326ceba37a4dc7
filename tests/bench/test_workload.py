"""The work of a cell is fixed before the clock: equal steps processor on and off, one cache size, its shapes."""
from __future__ import annotations

import pytest

from molgen_grid.bench.encoding import prompt
from molgen_grid.bench.tokenizer import build_tokenizer
from molgen_grid.bench.workload import constrained_steps, plan_workload
from molgen_grid.errors import InputError

ROWS = ["CO", "CCCCO", "c1ccccc1", "CO", "CCO"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def steps(tokenizer, rows: list[str]) -> int:
    return max(constrained_steps(s, tokenizer) for s in rows)


@pytest.mark.parametrize("kind", ["python", "tensor"])
def test_matched_gives_processor_on_and_off_the_same_steps(tokenizer, kind: str) -> None:
    on = plan_workload(ROWS, 2, tokenizer, kind, "matched", 10_000)
    off = plan_workload(ROWS, 2, tokenizer, "none", "matched", 10_000)
    assert [b.max_new_tokens for b in on.batches] == [b.max_new_tokens for b in off.batches] == [
        steps(tokenizer, ROWS[0:2]), steps(tokenizer, ROWS[2:4]), steps(tokenizer, ROWS[4:5])]
    assert [b.min_new_tokens for b in off.batches] == [b.max_new_tokens for b in off.batches]  # must run them all
    assert {b.min_new_tokens for b in on.batches} == {None}  # the processor ends each row at its EOS


def test_free_lets_unconstrained_rows_run_to_max_new_tokens(tokenizer) -> None:
    free = plan_workload(ROWS, 2, tokenizer, "none", "free", 1000)
    assert {(b.max_new_tokens, b.min_new_tokens) for b in free.batches} == {(1000, None)}
    constrained = plan_workload(ROWS, 2, tokenizer, "python", "free", 1000)
    assert [b.max_new_tokens for b in constrained.batches] == [b.max_new_tokens for b in
                                                               plan_workload(ROWS, 2, tokenizer, "none", "matched",
                                                                             1000).batches]


def test_max_new_tokens_caps_both_twins(tokenizer) -> None:
    for kind in ("none", "python"):
        assert {b.max_new_tokens for b in plan_workload(ROWS, 2, tokenizer, kind, "matched", 12).batches} == {12}


def test_one_cache_size_and_the_distinct_shapes(tokenizer) -> None:
    workload = plan_workload(ROWS, 2, tokenizer, "none", "matched", 10_000)
    lengths = [max(len(tokenizer(prompt(s))["input_ids"]) for s in batch.smiles) for batch in workload.batches]
    assert [b.prompt_length for b in workload.batches] == lengths
    assert workload.cache_length == max(b.prompt_length + b.max_new_tokens for b in workload.batches)
    again = plan_workload(ROWS[:4] + ROWS[:2], 2, tokenizer, "none", "matched", 10_000)  # batch 1 twice
    assert len(again.batches) == 3
    assert [b.shape for b in again.distinct()] == [b.shape for b in workload.batches[:2]]


def test_unknown_workload_is_refused(tokenizer) -> None:
    with pytest.raises(InputError, match="workload='fair' is unknown: use one of matched, free"):
        plan_workload(ROWS, 2, tokenizer, "none", "fair", 10)
