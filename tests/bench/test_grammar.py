"""The grammar processor: only the template's literal text and well-formed coordinates, then EOS, with one-character
and with merged tokens; the tensor implementation equals the Python reference without host reads."""
from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import LogitsProcessorList, PreTrainedTokenizerFast

from molgen_grid.bench.data import load_molecules
from molgen_grid.bench.encoding import PLACEHOLDER, TAGS
from molgen_grid.bench.generate import prompt
from molgen_grid.bench.grammar import (SLOT, SLOT_COMPLETE, SLOT_START, GrammarProcessor, ReferenceGrammarProcessor,
                                       max_new_tokens, run_number, vocabulary)
from molgen_grid.bench.templates import Template, TokenizerCache, build_templates
from molgen_grid.bench.tokenizer import CHARACTERS, SPECIAL
from molgen_grid.bench.validate import check_generation

from .test_constraints import DISTINCT, HOST_READS, small_model

#: Longest first, so the pre-tokenizer prefers them. `0>` and `<1` mix number and literal characters: the
#: grammar never allows them.
MERGES = ("0000", "000", "]<", ">[", ",-", ".0", "12", "0>", "<1")
NUMBER = re.compile(r"-?(0|[1-9][0-9]{0,2})\.[0-9]{4}")
BLOCK = re.compile(r"<([^>]*)>")
Processor = type[GrammarProcessor] | type[ReferenceGrammarProcessor]


def merged_tokenizer() -> PreTrainedTokenizerFast:
    """Like a real checkpoint's tokenizer: structural characters and digit groups merge into single tokens."""
    vocab = {t: i for i, t in enumerate([*SPECIAL, *TAGS, *MERGES, *CHARACTERS])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("|".join(map(re.escape, MERGES)) + "|."), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens([*SPECIAL, *TAGS])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", extra_special_tokens=list(TAGS), padding_side="left")


@pytest.fixture(scope="module")
def merged() -> tuple[Any, Any]:
    tokenizer = merged_tokenizer()
    return small_model(tokenizer), tokenizer


@pytest.fixture(params=["characters", "merged"])
def model_and_tokenizer(request: pytest.FixtureRequest, tiny: tuple[Any, Any],
                        merged: tuple[Any, Any]) -> tuple[Any, Any]:
    return tiny if request.param == "characters" else merged


def templates_of(smiles: list[str], tokenizer: Any) -> list[Template]:
    return build_templates(smiles, tokenizer, TokenizerCache(False), workers=1).templates


def generate(processor: Processor, model: Any, tokenizer: Any, smiles: list[str],
             **kwargs: Any) -> tuple[list[Template], torch.Tensor, Any]:
    """generate() over one left-padded batch under `processor`: the templates, the new tokens and the output."""
    templates = templates_of(smiles, tokenizer)
    inputs = tokenizer([prompt(s) for s in smiles], return_tensors="pt", padding=True)
    length = inputs["input_ids"].shape[1]
    rows_per_template = int(kwargs.get("num_beams", 1))
    kwargs.setdefault("do_sample", False)
    with torch.inference_mode():
        out = model.generate(**inputs, logits_processor=LogitsProcessorList(
                                 [processor(templates, tokenizer, length, rows_per_template)]),
                             max_new_tokens=max(max_new_tokens(t) for t in templates),
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                             return_dict_in_generate=True, output_scores=True, **kwargs)
    return templates, out.sequences[:, length:], out


def assert_follows_the_grammar(tokenizer: Any, smiles: str, template: Template, new: torch.Tensor) -> None:
    ids = new.tolist()
    assert tokenizer.eos_token_id in ids
    count = ids.index(tokenizer.eos_token_id) + 1
    assert count <= max_new_tokens(template)
    assert not {tokenizer.convert_tokens_to_ids(m) for m in ("0>", "<1") if m in tokenizer.get_vocab()} & set(ids)
    text = tokenizer.decode(ids[:count - 1], skip_special_tokens=False)
    assert text.endswith("[/CONFORMER]"), text
    assert BLOCK.sub(PLACEHOLDER, text) == template.reference
    for block in BLOCK.findall(text):
        numbers = block.split(",")
        assert len(numbers) == 3 and all(NUMBER.fullmatch(n) and n != "-0.0000" for n in numbers), block
    assert check_generation(smiles, text).valid, text


# --- The number DFA ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("slot", ["1.2345,-0.5000,12.0000", "-123.4567,0.0000,7.1000", "-0.0001,999.9999,-5.0000"])
def test_the_dfa_accepts_slots(slot: str) -> None:
    assert run_number(SLOT_START, slot) == SLOT_COMPLETE


@pytest.mark.parametrize("number", ["-0.0000", "01.0000", "1.234", "1234.0000", "1.23456", "+1.0000", "1.2.0000",
                                    "--1.0000", "-.5000", "1.0000-"])
def test_the_dfa_rejects_malformed_numbers(number: str) -> None:
    assert run_number(SLOT_START, f"{number},0.0000,0.0000") is None
    assert run_number(SLOT_START, f"0.0000,0.0000,{number}") != SLOT_COMPLETE  # `1.234`: not yet complete


def test_an_incomplete_slot_is_not_complete() -> None:
    for prefix in ("1.2345,2.3456", "1.2345,2.3456,", "1.2345,2.3456,3.456", "-", ""):
        assert run_number(SLOT_START, prefix) not in (None, SLOT_COMPLETE), prefix


# --- Exactness: every generation follows the grammar ------------------------------------------------------------

@pytest.mark.slow
def test_greedy_follows_the_grammar_on_the_cdk2_molecules(tiny: tuple[Any, Any], molecule_rows: slice) -> None:
    """A spread sample of the 47 (`--every-molecule`: all of them), in batches of 8."""
    model, tokenizer = tiny
    smiles = load_molecules("rdkit:Fastcluster/testdata/cdk2.sdf").smiles
    assert len(smiles) == 47
    smiles = smiles[molecule_rows]
    for start in range(0, len(smiles), 8):
        batch = smiles[start:start + 8]
        templates, new, _ = generate(GrammarProcessor, model, tokenizer, batch)
        for s, template, row in zip(batch, templates, new):
            assert_follows_the_grammar(tokenizer, s, template, row)


def test_sampling_follows_the_grammar(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    smiles = DISTINCT[:3]
    torch.manual_seed(0)
    templates, new, _ = generate(GrammarProcessor, model, tokenizer, smiles, do_sample=True, top_p=0.4,
                                 temperature=1.0)
    for s, template, row in zip(smiles, templates, new):
        assert_follows_the_grammar(tokenizer, s, template, row)


def test_merged_tokens_follow_the_grammar(merged: tuple[Any, Any]) -> None:
    model, tokenizer = merged
    smiles = load_molecules("rdkit:Fastcluster/testdata/cdk2.sdf", sample_size=8).smiles
    templates, new, _ = generate(GrammarProcessor, model, tokenizer, smiles)
    for s, template, row in zip(smiles, templates, new):
        assert_follows_the_grammar(tokenizer, s, template, row)
    merges = {tokenizer.convert_tokens_to_ids(m) for m in ("]<", ">[", ",-", ".0", "12", "000", "0000")}
    assert merges & set(new.flatten().tolist())  # the model did write merged tokens


def test_max_new_tokens_is_the_longest_text_and_eos(tiny: tuple[Any, Any]) -> None:
    """The longest text (every number -999.9999), one character per token, then EOS: all allowed, and exactly
    the bound."""
    _, tokenizer = tiny
    template = templates_of(["CC(=O)O"], tokenizer)[0]
    longest = template.reference.replace(SLOT, "-999.9999,-999.9999,-999.9999")
    ids = [tokenizer.convert_tokens_to_ids(c) for c in longest] + [tokenizer.eos_token_id]
    assert len(ids) == max_new_tokens(template)
    for steps in drive([ReferenceGrammarProcessor, GrammarProcessor], tokenizer, template, ids):
        assert all(torch.isfinite(scores[0, token]) for token, scores in zip(ids, steps))


# --- Allowed sets at given points -------------------------------------------------------------------------------

def drive(kinds: list[Processor], tokenizer: Any, template: Template, ids: list[int]) -> list[list[torch.Tensor]]:
    """Each processor's scores (from zeros) before each token of `ids` and after the last, one row."""
    processors = [kind([template], tokenizer, 1) for kind in kinds]
    out: list[list[torch.Tensor]] = [[] for _ in kinds]
    for step in range(len(ids) + 1):
        input_ids = torch.tensor([[tokenizer.bos_token_id, *ids[:step]]])
        for processor, scores in zip(processors, out):
            scores.append(processor(input_ids, torch.zeros(1, len(tokenizer))))
    return out


def test_tokens_that_cross_a_boundary_are_never_allowed(merged: tuple[Any, Any]) -> None:
    _, tokenizer = merged
    template = templates_of(["C"], tokenizer)[0]
    assert template.reference == "[CONFORMER][C]<0.0000,0.0000,0.0000>[/CONFORMER]"
    path = ["[CONFORMER]", "[", "C", "]<", "1", ".0", "000", ",-", "12", ".", "0000", ",", "0", ".", "000", "0",
            ">[", "/", "C", "O", "N", "F", "O", "R", "M", "E", "R", "]", "</s>"]
    ids = tokenizer.convert_tokens_to_ids(path)
    reference, tensor = drive([ReferenceGrammarProcessor, GrammarProcessor], tokenizer, template, ids)
    assert all(torch.equal(a, b) for a, b in zip(reference, tensor))
    texts = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    allowed = [{texts[i] for i in torch.isfinite(scores[0]).nonzero().flatten().tolist()} for scores in tensor]
    assert allowed[0] == {"[CONFORMER]", "["}
    assert allowed[3] == {"]", "]<"}
    assert allowed[4] == {"-", "12", *"0123456789"}  # a number starts: not `<1`, `0000`, `.0`, `,-`
    assert allowed[5] == {".", ".0", *"0123456789", "12"}  # after `1`: more integer digits or the point
    assert allowed[6] == {"000", "12", *"0123456789"}  # after `.0`: three decimals at most, not `0000`
    assert allowed[7] == {",", ",-"}
    assert allowed[8] == {"12", *"0123456789"}  # after `,-`: `-0` allowed, not `--`, `0000`
    assert allowed[15] == set("0123456789")  # the last decimal: not `0>`, `000`, `0000`
    assert allowed[16] == {">", ">["}
    assert allowed[-1] == allowed[-2] == {"</s>"}  # END allows EOS, also after it


# --- The tensor processor equals the reference ------------------------------------------------------------------

@pytest.mark.parametrize("rows_per_template", [1, 3])
def test_tensor_equals_reference_at_every_step(model_and_tokenizer: tuple[Any, Any], rows_per_template: int) -> None:
    """Random scores (some -inf, also on allowed tokens) and a model vocabulary wider than the tokenizer's; the
    rows walk random paths through the grammar, are shuffled within their group between steps as beam search
    does, get PAD after their EOS, and one row writes a token the grammar does not allow. The two processors
    give identical scores."""
    _, tokenizer = model_and_tokenizer
    templates = templates_of(DISTINCT, tokenizer)
    prompt_length, groups = 4, len(templates)
    rows, width = groups * rows_per_template, len(tokenizer) + 3
    reference = ReferenceGrammarProcessor(templates, tokenizer, prompt_length, rows_per_template)
    tensor = GrammarProcessor(templates, tokenizer, prompt_length, rows_per_template, device="cpu")
    # The path: another processor's choice from scores with no -inf, so every row but the broken one ends.
    chooser = GrammarProcessor(templates, tokenizer, prompt_length, rows_per_template)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.zeros(rows, prompt_length, dtype=torch.long)
    for step in range(max(max_new_tokens(t) for t in templates) + 2):
        scores = torch.randn(rows, width, generator=generator)
        chosen = chooser(input_ids, scores.clone())
        tokens = chosen.argmax(dim=1)
        scores[torch.rand(scores.shape, generator=generator) < 0.3] = -float("inf")
        expected, got = reference(input_ids, scores.clone()), tensor(input_ids, scores.clone())
        assert torch.equal(expected, got), step
        assert torch.isinf(got[:, len(tokenizer):]).all()
        finished = (input_ids[:, prompt_length:] == tokenizer.eos_token_id).any(dim=1)
        tokens[finished] = tokenizer.pad_token_id  # as generate() writes after a row's EOS
        if step == 20:
            tokens[0] = tokenizer.pad_token_id  # before END: the grammar does not allow it
        input_ids = torch.cat([input_ids, tokens.unsqueeze(1)], dim=1)
        order = torch.rand(groups, rows_per_template, generator=generator).argsort(dim=1)
        input_ids = input_ids[(order + torch.arange(groups).unsqueeze(1) * rows_per_template).flatten()]
    ended = torch.isfinite(chosen)  # every row but the broken one allows EOS only; the broken one nothing
    assert ended.sum().item() == rows - 1 and ended[:, tokenizer.eos_token_id].sum().item() == rows - 1


@pytest.mark.slow  # several seconds: in the whole suite, not the quick half
def test_greedy_tensor_equals_reference(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    templates, reference, out_reference = generate(ReferenceGrammarProcessor, model, tokenizer, DISTINCT)
    _, tensor, out_tensor = generate(GrammarProcessor, model, tokenizer, DISTINCT)
    assert torch.equal(reference, tensor)
    assert all(torch.equal(a, b) for a, b in zip(out_reference.scores, out_tensor.scores))
    for s, template, row in zip(DISTINCT, templates, tensor):
        assert_follows_the_grammar(tokenizer, s, template, row)


@pytest.mark.slow  # several seconds: in the whole suite, not the quick half
@pytest.mark.parametrize("num_beams", [2, 3])
def test_beam_search_tensor_equals_reference(model_and_tokenizer: tuple[Any, Any], num_beams: int) -> None:
    model, tokenizer = model_and_tokenizer
    smiles = DISTINCT[:4]
    templates, reference, out_reference = generate(ReferenceGrammarProcessor, model, tokenizer, smiles,
                                                   num_beams=num_beams)
    _, tensor, out_tensor = generate(GrammarProcessor, model, tokenizer, smiles, num_beams=num_beams)
    assert torch.equal(reference, tensor)
    assert torch.equal(out_reference.sequences_scores, out_tensor.sequences_scores)
    for s, template, row in zip(smiles, templates, tensor):
        assert_follows_the_grammar(tokenizer, s, template, row)


# --- Graph safety, tables ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_tensor_call_reads_nothing_back_to_the_host(tiny: tuple[Any, Any], device: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """No `.item()`/`.tolist()`/`bool(tensor)`... in a call, beams included; on `meta` tensors have no values,
    so any read of one (and so any data-dependent Python) would fail."""
    _, tokenizer = tiny
    templates = templates_of(DISTINCT, tokenizer)
    processor = GrammarProcessor(templates, tokenizer, 4, rows_per_template=2, device=device)
    rows = len(templates) * 2

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the grammar processor read a device value on the host")

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, refuse)
    for step in range(4):
        scores = torch.zeros(rows, len(tokenizer) + 2, device=device)
        out = processor(torch.zeros(rows, 4 + step, dtype=torch.long, device=device), scores)
        assert out.shape == scores.shape and out.device == scores.device


def test_tensor_call_traces_as_one_graph(tiny: tuple[Any, Any]) -> None:
    """torch.compile with fullgraph=True refuses graph breaks (a host read, data-dependent Python): every call,
    the first included, under beam search."""
    _, tokenizer = tiny
    templates = templates_of(DISTINCT[:2], tokenizer)
    eager, compiled = (GrammarProcessor(templates, tokenizer, 4, rows_per_template=2) for _ in range(2))
    traced = torch.compile(compiled.__call__, fullgraph=True, backend="eager")
    input_ids = torch.zeros(4, 4, dtype=torch.long)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        scores = torch.randn(4, len(tokenizer), generator=generator)
        expected = eager(input_ids, scores.clone())
        assert torch.equal(traced(input_ids, scores.clone()), expected)
        input_ids = torch.cat([input_ids, expected.argmax(dim=1, keepdim=True)], dim=1)[[1, 0, 3, 2]]  # beams swap


def test_the_vocabulary_tables_are_built_once_per_tokenizer(tiny: tuple[Any, Any]) -> None:
    _, tokenizer = tiny
    templates = templates_of(["CO"], tokenizer)
    first, second = (GrammarProcessor(templates, tokenizer, 4) for _ in range(2))
    assert first.vocabulary is second.vocabulary is vocabulary(tokenizer)
    assert vocabulary(merged_tokenizer()) is not vocabulary(tokenizer)


def test_a_batch_of_another_size_is_refused(tiny: tuple[Any, Any]) -> None:
    _, tokenizer = tiny
    processor = GrammarProcessor(templates_of(["CO"], tokenizer), tokenizer, 4)
    with pytest.raises(ValueError, match="1 rows"):
        processor(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, len(tokenizer)))
