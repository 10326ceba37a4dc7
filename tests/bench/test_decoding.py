"""The `decoding` axis on the embedded model and its draft: greedy assisted decoding writes the tokens greedy
standard decoding writes (the seeds' determinism check), every pass starts from the same draft state, the draft
figures are what the candidate generator counted, and what transformers refuses ends unsupported in its words."""
from __future__ import annotations

from pathlib import Path

import pytest

from molgen_grid.bench.decoding import EMBEDDED_DRAFT
from molgen_grid.bench.model import EMBEDDED

from .conftest import compose, run_cell

SMALL = ["sample_size=2", "batch_size=1", "max_new_tokens=40", "warmup=0"]


#: The molecules checked (`molecule_rows`) in this many parts, one test each, so test workers share them.
PARTS = 3


def greedy_texts(decoding: str, rows: slice, part: int) -> list[str]:
    """One pass at batch 1 over every PARTS-th of the default (cdk2) molecules in `rows`, from `part`, with the
    default processor, as a cell runs it."""
    import torch

    from molgen_grid.bench.cell import generation_rows, load_generator
    from molgen_grid.bench.passes import run_pass

    cfg = compose("sample_size=null", "batch_size=1", decoding=decoding)
    _, all_rows = generation_rows(cfg)
    assert len(all_rows) == 47
    loaded = load_generator(cfg, torch.device("cpu"), all_rows[rows][part::PARTS])
    return run_pass(loaded.generator, loaded.workload.batches, cfg, 1).texts


@pytest.mark.slow
@pytest.mark.parametrize("part", range(PARTS))
def test_greedy_assisted_decoding_writes_the_tokens_of_greedy_standard_on_the_default_molecules(
        molecule_rows: slice, part: int) -> None:
    """Whole generations (up to each template's end), the default processor (python): a draft changes how many
    forwards the model runs, never what it writes. The parts together cover the sample of the 47 molecules
    (`--every-molecule`: all of them)."""
    standard = greedy_texts("standard", molecule_rows, part)
    assert len(standard) == len(range(47)[molecule_rows][part::PARTS]) and all(standard)
    assert greedy_texts("assisted", molecule_rows, part) == standard


def test_the_embedded_draft_is_small_and_shares_the_model_vocabulary() -> None:
    import json

    draft, model = (json.loads((d / "config.json").read_text()) for d in (EMBEDDED_DRAFT, EMBEDDED))
    assert draft["vocab_size"] == model["vocabulary_size" if "vocabulary_size" in model else "vocab_size"]
    assert draft["num_hidden_layers"] < model["num_hidden_layers"] and draft["hidden_size"] < model["hidden_size"]
    assert (EMBEDDED_DRAFT / "model.safetensors").stat().st_size <= 5 * 2 ** 20


def test_assisted_figures_are_the_candidate_generators_counts() -> None:
    out = run_cell(compose(*SMALL, "repeats=2", decoding="assisted"))
    assert out["status"] == "ok", out.get("reason")
    metrics, applied = out["metrics"], out["applied"]["decoding"]
    assert applied["candidate_generator"] == "AssistedCandidateGenerator"
    assert applied["draft_layers"] == 2 and applied["draft_parameters"] < 500_000
    assert applied["draft_tokens_at_start"] == [5, 5] and applied["schedule"] == "constant"
    drafted, accepted = metrics["draft_tokens"]["median"], metrics["accepted_tokens"]["median"]
    assert 0 < accepted <= drafted
    assert metrics["acceptance_ratio"]["median"] == pytest.approx(accepted / drafted)
    # every round is one forward of the model: fewer forwards than tokens once any draft is accepted
    tokens, steps = metrics["generated_tokens"], metrics["decode_steps"]
    assert steps < tokens and metrics["target_forwards_per_token"]["median"] == pytest.approx(steps / tokens)
    assert steps + accepted == tokens  # each round writes its accepted tokens and one of the model's own


def test_standard_decoding_has_no_draft_figures_and_one_forward_per_token_at_batch_1() -> None:
    out = run_cell(compose(*SMALL, "repeats=1"))
    metrics = out["metrics"]
    assert out["applied"]["decoding"] == {"kind": "standard", "candidate_generator": None}
    assert metrics["draft_tokens"]["median"] is None and metrics["acceptance_ratio"]["median"] is None
    assert metrics["target_forwards_per_token"]["median"] == 1.0
    assert metrics["latency_s"]["median"] == pytest.approx(metrics["pass_s"]["median"] / 2, rel=0.5)


def test_each_pass_starts_from_the_same_draft_state_under_the_heuristic_schedule() -> None:
    """transformers' heuristic keeps the draft length it reached on the draft model across calls; each pass
    (warm-up included) starts again from decoding.draft_tokens, so the repeats draft alike."""
    out = run_cell(compose(*SMALL, "repeats=3", "warmup=1", "decoding.schedule=heuristic", decoding="assisted"))
    metrics, applied = out["metrics"], out["applied"]["decoding"]
    assert applied["schedule"] == "heuristic" and applied["draft_tokens_at_start"][0] == 5
    assert applied["draft_tokens_reached"] != [5, 5]  # the schedule moved within the pass
    assert applied["draft_tokens_at_start"][1] == applied["draft_tokens_reached"][0]  # and carried to the next call
    drafted = metrics["draft_tokens"]["values"]
    assert len(set(drafted)) == 1 and len(set(metrics["accepted_tokens"]["values"])) == 1, drafted


def test_prompt_lookup_and_a_confidence_threshold_are_read_back() -> None:
    looked_up = run_cell(compose(*SMALL, "repeats=1", decoding="prompt_lookup"))
    lookup = looked_up["applied"]["decoding"]
    assert lookup["candidate_generator"] == "PromptLookupCandidateGenerator"
    standard = run_cell(compose(*SMALL, "repeats=1"))
    assert [g["text"] for g in looked_up["generations"]] == [g["text"] for g in standard["generations"]]
    assert lookup["draft_tokens_at_start"] == [10, 10] and lookup["max_matching_ngram"] == 2
    early = run_cell(compose(*SMALL, "repeats=1", "decoding.confidence_threshold=0.4", decoding="assisted"))
    assert early["applied"]["decoding"]["confidence_threshold"] == 0.4


@pytest.mark.parametrize("overrides, reason", [
    (["batch_size=2"], "assisted decoding: assisted generate is only supported for batch_size = 1"),
    (["sampling=beam_search"], "assisted decoding: transformers would run beam_search without the draft"),
    (["logit_processor=grammar"], "assisted decoding: the grammar logit processor keeps one state per step"),
])
def test_what_assisted_decoding_cannot_run_ends_unsupported_with_the_reason(overrides: list[str],
                                                                            reason: str) -> None:
    out = run_cell(compose(*SMALL, "sample_size=2", "repeats=1", *overrides, decoding="assisted"))
    assert out["status"] == "unsupported" and out["reason"].startswith(reason), out.get("reason")


def test_a_draft_with_another_vocabulary_is_refused_in_one_line(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from molgen_grid.errors import InputError

    other = tmp_path / "draft"
    LlamaForCausalLM(LlamaConfig(vocab_size=200, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(other)
    with pytest.raises(InputError, match="has a vocabulary of 200 tokens, the model 103: a draft must share"):
        run_cell(compose(*SMALL, "repeats=1", f"decoding.draft_path={other}", decoding="assisted"))


def test_decoding_settings_are_checked_when_the_grid_is_planned() -> None:
    from molgen_grid.bench.settings import check_setting

    assert "one of constant, heuristic, heuristic_transient" in check_setting("decoding.schedule", "adaptive")
    assert "a positive integer" in check_setting("decoding.draft_tokens", 0)
    assert "[0, 1)" in check_setting("decoding.confidence_threshold", 1.0)
    assert check_setting("decoding.draft_tokens", 15) is None


def test_a_higher_confidence_threshold_stops_more_draft_tokens_on_the_same_molecule() -> None:
    """The counts the candidate generator gave: threshold 0 never stops a round, 0.7 stops some; greedy writes
    the same tokens either way."""
    never, early = (run_cell(compose(*SMALL, "sample_size=1", "repeats=1", f"decoding.confidence_threshold={t}",
                                     decoding="assisted")) for t in (0.0, 0.7))
    stopped = [out["metrics"]["draft_tokens_stopped"]["median"] for out in (never, early)]
    assert stopped[0] == 0 and stopped[1] > 0, stopped
    assert early["metrics"]["draft_tokens"]["median"] < never["metrics"]["draft_tokens"]["median"]
    assert [g["text"] for g in early["generations"]] == [g["text"] for g in never["generations"]]
