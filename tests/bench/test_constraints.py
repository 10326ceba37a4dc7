"""The python logit processor forces the exact template, with one-character and with merged tokens; the tensor
one does exactly the same without per-row Python or host syncs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList, PreTrainedTokenizerFast

from molgen_grid.bench.constraints import PythonTemplateProcessor, TensorTemplateProcessor, make_processor
from molgen_grid.bench.encoding import TAGS, canonical, conformer_body, split_blocks
from molgen_grid.bench.encoding import prompt
from molgen_grid.bench.generate import BatchRun
from molgen_grid.errors import InputError
from molgen_grid.bench.templates import Template, TokenizerCache, build_templates
from molgen_grid.bench.tokenizer import CHARACTERS, SPECIAL

from .conftest import compose, generate_batch, run_cell

MERGES = ("]<", ">[", ">(", "=[")
#: Different prompt lengths (left padding), a repeated molecule, a charge and a ring closure.
SMILES = ["CCO", "c1ccccc1C(=O)[O-]", "CCO", "C[C@H](N)C(=O)O"]


def merged_tokenizer() -> PreTrainedTokenizerFast:
    """Like a real checkpoint's tokenizer: structural characters merge into single tokens."""
    vocab = {t: i for i, t in enumerate([*SPECIAL, *TAGS, *MERGES, *CHARACTERS])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    pattern = "|".join(m.replace("[", r"\[").replace("(", r"\(").replace("]", r"\]") for m in MERGES)
    core.pre_tokenizer = pre_tokenizers.Split(Regex(f"{pattern}|."), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens([*SPECIAL, *TAGS])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", extra_special_tokens=list(TAGS), padding_side="left")


def small_model(tokenizer: Any) -> LlamaForCausalLM:
    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval()


def generate_constrained(model: Any, tokenizer: Any) -> tuple[list[Template], BatchRun]:
    """Greedy generation of SMILES in one left-padded batch with the python processor."""
    cfg = compose("max_new_tokens=400", "batch_size=4")
    templates = build_templates(SMILES, tokenizer, TokenizerCache(True), workers=1).templates
    return templates, generate_batch(model, tokenizer, cfg, SMILES, templates)


def assert_follows_templates(model: Any, tokenizer: Any) -> None:
    templates, run = generate_constrained(model, tokenizer)
    strings = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    for smiles, template, text, count in zip(SMILES, templates, run.texts, run.tokens_per_row):
        assert count == len(template.token_ids) + 1  # the template, then the forced EOS
        # Token by token: the generation re-tokenizes to the template's positions, COPY ones identical.
        generated = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(generated) == len(template.token_ids), text
        for position, (free, expected) in enumerate(zip(template.free, template.token_ids)):
            if not free:
                assert generated[position] == expected, (position, text)
            else:
                assert not any(c in strings[generated[position]] for c in "<>")
        plain, blocks = split_blocks(conformer_body(text))
        assert canonical(plain) == canonical(smiles) and len(blocks) == template.reference.count("<")


def test_forces_the_template_with_the_character_tokenizer(tiny: tuple[Any, Any]) -> None:
    assert_follows_templates(*tiny)


def test_forces_the_template_with_merged_tokens() -> None:
    tokenizer = merged_tokenizer()
    templates = build_templates(["CC(=O)O"], tokenizer, TokenizerCache(False), workers=1).templates
    tokens = tokenizer.convert_ids_to_tokens(list(templates[0].token_ids))
    assert {"]<", ">[", ">(", "=["} <= set(tokens)
    assert not any(f for t, f in zip(tokens, templates[0].free) if t in MERGES)  # mixed tokens are COPY
    assert_follows_templates(small_model(tokenizer), tokenizer)


@pytest.mark.parametrize("blocked", [",", "-"])
def test_no_separator_just_before_a_closing_bracket(blocked: str) -> None:
    """Bias the model toward `,` or `-`: the processor still keeps them out of a block's last position."""
    tokenizer = merged_tokenizer()
    model = small_model(tokenizer)
    with torch.no_grad():
        model.lm_head.bias = None
        model.lm_head.weight[tokenizer.convert_tokens_to_ids(blocked)] += 5.0
    _, run = generate_constrained(model, tokenizer)
    for text in run.texts:
        _, blocks = split_blocks(conformer_body(text))
        assert blocks and all(not b.endswith(blocked) for b in blocks), text
        assert any(blocked in b for b in blocks)  # the bias did act elsewhere in the block


# --- The tensor processor: the python one's semantics, whole-batch tensor ops -------------------------------------

#: Five different molecules of different prompt lengths (a left-padded batch): a charge, rings, a stereocentre.
DISTINCT = ["CCO", "c1ccccc1C(=O)[O-]", "C[C@H](N)C(=O)O", "O=C1CCCN1", "CC(=O)Nc1ccc(O)cc1"]
#: Tensor methods that read a device value back to the host (a sync on CUDA).
HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__")


@pytest.fixture(params=["characters", "merged"])
def model_and_tokenizer(request: pytest.FixtureRequest, tiny: tuple[Any, Any]) -> tuple[Any, Any]:
    """The embedded tiny model with its character tokenizer, and a small model with the merged-token one."""
    if request.param == "characters":
        return tiny
    tokenizer = merged_tokenizer()
    return small_model(tokenizer), tokenizer


def both(templates: list[Template], tokenizer: Any, prompt_length: int,
         rows_per_template: int = 1) -> tuple[PythonTemplateProcessor, TensorTemplateProcessor]:
    python = make_processor("python", templates, tokenizer, prompt_length, rows_per_template)
    tensor = make_processor("tensor", templates, tokenizer, prompt_length, rows_per_template, device="cpu")
    assert isinstance(python, PythonTemplateProcessor) and isinstance(tensor, TensorTemplateProcessor)
    return python, tensor


def generate_with(kind: str, model: Any, tokenizer: Any, smiles: list[str], **kwargs: Any) -> Any:
    """generate() over one left-padded batch with the `kind` processor, returning sequences and scores."""
    templates = build_templates(smiles, tokenizer, TokenizerCache(False), workers=1).templates
    inputs = tokenizer([prompt(s) for s in smiles], return_tensors="pt", padding=True)
    assert tokenizer.padding_side == "left" and not bool(inputs["attention_mask"][:, 0].all())  # padded rows
    num_beams = int(kwargs.get("num_beams", 1))
    processor = make_processor(kind, templates, tokenizer, inputs["input_ids"].shape[1], num_beams, device="cpu")
    with torch.inference_mode():
        return model.generate(**inputs, logits_processor=LogitsProcessorList([processor]), do_sample=False,
                              max_new_tokens=max(len(t.token_ids) for t in templates) + 2,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                              return_dict_in_generate=True, output_scores=True, **kwargs)


def test_make_processor_kinds(tiny: tuple[Any, Any]) -> None:
    _, tokenizer = tiny
    templates = build_templates(["CO"], tokenizer, TokenizerCache(False), workers=1).templates
    assert make_processor("none", None, tokenizer, 5) is None
    both(templates, tokenizer, 5)  # each kind, its class
    with pytest.raises(InputError, match="unknown"):
        make_processor("cuda_graph", templates, tokenizer, 5)


@pytest.mark.parametrize("rows_per_template", [1, 2])
def test_tensor_equals_python_at_every_step(model_and_tokenizer: tuple[Any, Any], rows_per_template: int) -> None:
    """Random scores (some -inf, also on forced tokens), every step of every template and past the longest, a
    model vocabulary wider than the tokenizer's: the two processors give identical scores."""
    _, tokenizer = model_and_tokenizer
    templates = build_templates(DISTINCT, tokenizer, TokenizerCache(False), workers=1).templates
    prompt_length = 9
    python, tensor = both(templates, tokenizer, prompt_length, rows_per_template)
    generator = torch.Generator().manual_seed(0)
    rows, longest = len(templates) * rows_per_template, max(len(t.token_ids) for t in templates)
    for step in range(longest + 4):
        scores = torch.randn(rows, len(tokenizer) + 3, generator=generator)
        scores[torch.rand(scores.shape, generator=generator) < 0.3] = -float("inf")
        input_ids = torch.zeros(rows, prompt_length + step, dtype=torch.long)
        expected, got = python(input_ids, scores.clone()), tensor(input_ids, scores.clone())
        assert torch.equal(expected, got), step
    assert (got.argmax(dim=1) == tokenizer.eos_token_id).all()  # past the longest template: EOS only


def test_greedy_tensor_equals_python_token_for_token(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    python = generate_with("python", model, tokenizer, DISTINCT)
    tensor = generate_with("tensor", model, tokenizer, DISTINCT)
    assert torch.equal(python.sequences, tensor.sequences)
    assert len(python.scores) == len(tensor.scores)
    assert all(torch.equal(a, b) for a, b in zip(python.scores, tensor.scores))
    # Every row wrote its whole template and then EOS (the longest one ends the loop).
    assert (tensor.sequences == tokenizer.eos_token_id).any(dim=1).all()


@pytest.mark.slow  # several seconds: in the whole suite, not the quick half
def test_beam_search_tensor_equals_python(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    python = generate_with("python", model, tokenizer, DISTINCT, num_beams=2)
    tensor = generate_with("tensor", model, tokenizer, DISTINCT, num_beams=2)
    assert python.sequences.shape[0] == len(DISTINCT)
    assert torch.equal(python.sequences, tensor.sequences)
    assert torch.equal(python.sequences_scores, tensor.sequences_scores)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_tensor_call_reads_nothing_back_to_the_host(tiny: tuple[Any, Any], device: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """No `.item()`/`.tolist()`/`bool(tensor)`... in a call. On the `meta` device tensors have shapes and no
    values, so any read of a value (and so any data-dependent Python) would fail: the call is shapes only."""
    _, tokenizer = tiny
    templates = build_templates(DISTINCT, tokenizer, TokenizerCache(False), workers=1).templates
    processor = TensorTemplateProcessor(templates, tokenizer, 4, rows_per_template=2, device=device)
    rows, longest = len(templates) * 2, max(len(t.token_ids) for t in templates)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the tensor processor read a device value on the host")

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, refuse)
    for step in (0, 1, longest - 1, longest, longest + 5):  # the first call included (it fits the masks)
        scores = torch.zeros(rows, len(tokenizer), device=device)
        out = processor(torch.zeros(rows, 4 + step, dtype=torch.long, device=device), scores)
        assert out.shape == scores.shape and out.device == scores.device
    monkeypatch.undo()
    with pytest.raises(AssertionError, match="host"):  # the check does catch a host read
        monkeypatch.setattr(torch.Tensor, "item", refuse)
        torch.zeros(1).item()


def test_tensor_call_traces_as_one_graph(tiny: tuple[Any, Any]) -> None:
    """torch.compile with fullgraph=True refuses graph breaks (a host read, data-dependent Python)."""
    _, tokenizer = tiny
    templates = build_templates(DISTINCT[:2], tokenizer, TokenizerCache(False), workers=1).templates
    processor = TensorTemplateProcessor(templates, tokenizer, 4)
    scores = torch.randn(2, len(tokenizer))
    input_ids = torch.zeros(2, 6, dtype=torch.long)
    processor(input_ids, scores.clone())  # fit the masks outside the traced call, as the first step does
    traced = torch.compile(processor.__call__, fullgraph=True, backend="eager")
    assert torch.equal(traced(input_ids, scores.clone()), processor(input_ids, scores.clone()))


def test_run_cell_tensor_equals_python(tmp_path: Path) -> None:
    path = tmp_path / "two.smi"
    path.write_text("CO\nCCO\n")
    settings = (f"data.path={path}", "sample_size=2", "batch_size=2", "max_new_tokens=120", "warmup=0", "repeats=1")
    outs = {kind: run_cell(compose(*settings, logit_processor=kind), cpus=1) for kind in ("python", "tensor")}
    assert all(out["status"] == "ok" for out in outs.values())
    python, tensor = (outs[k]["generations"] for k in ("python", "tensor"))
    assert [g["smiles"] for g in tensor] == ["CO", "CCO"]
    assert tensor == python
    assert all(g["text"].startswith("[CONFORMER]") and g["text"].endswith("[/CONFORMER]") for g in tensor)
    assert outs["tensor"]["metrics"]["template_s"]["median"] > 0  # the tensor kind builds templates too


def test_python_has_the_references_per_step_costs_and_no_more(tiny: tuple[Any, Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Per step and row: one read of the template's device-side flag (the reference's implicit `.item()`, a
    sync on CUDA), a second on FREE rows (the look-ahead flag); never a host-to-device copy of a mask."""
    _, tokenizer = tiny
    templates = build_templates(DISTINCT, tokenizer, TokenizerCache(False), workers=1).templates
    processor = make_processor("python", templates, tokenizer, 4)
    counts = {"reads": 0, "copies": 0}
    read, copy = torch.Tensor.__bool__, torch.Tensor.to

    def counting_read(self: torch.Tensor) -> bool:
        counts["reads"] += 1
        return read(self)

    def counting_copy(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        counts["copies"] += 1
        return copy(self, *args, **kwargs)

    processor(torch.zeros(len(DISTINCT), 4, dtype=torch.long), torch.zeros(len(DISTINCT), len(tokenizer)))
    monkeypatch.setattr(torch.Tensor, "__bool__", counting_read)
    monkeypatch.setattr(torch.Tensor, "to", counting_copy)
    for step in (1, 2, 30):
        before = counts["reads"]
        processor(torch.zeros(len(DISTINCT), 4 + step, dtype=torch.long), torch.zeros(len(DISTINCT), len(tokenizer)))
        free = sum(t.free[step] for t in templates if step < len(t.token_ids))
        within = sum(step < len(t.token_ids) for t in templates)
        assert counts["reads"] - before == within + free
    assert counts["copies"] == 0


def test_vocabulary_tables_are_built_once_per_tokenizer(tiny: tuple[Any, Any]) -> None:
    from molgen_grid.bench.vocabulary import vocabulary_tables

    _, tokenizer = tiny
    templates = build_templates(["CO"], tokenizer, TokenizerCache(False), workers=1).templates
    python, tensor = both(templates, tokenizer, 5)
    assert python.tables is tensor.tables is vocabulary_tables(tokenizer)
    assert vocabulary_tables(merged_tokenizer()) is not python.tables
    # the public project's sets: raw strings with < or >, the tags' pieces, BOS/EOS/PAD; `,`/`-`-only strings
    strings = {i: t for t, i in tokenizer.get_vocab().items()}
    assert {strings[i] for i in python.tables.blocked} == {"<", ">", "<s>", "</s>", "<pad>", "<unk>", "[SMILES]",
                                                           "[/SMILES]", "[CONFORMER]", "[/CONFORMER]"}
    assert {strings[i] for i in python.tables.comma_dash} == {",", "-"}
