"""The python logit processor forces the exact template, with one-character and with merged tokens."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from molgen_grid.bench.encoding import TAGS, canonical, conformer_body, split_blocks
from molgen_grid.bench.generate import BatchRun, Generator
from molgen_grid.bench.templates import Template, TokenizerCache, build_templates
from molgen_grid.bench.tokenizer import CHARACTERS, SPECIAL

from .conftest import compose

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
    return templates, Generator(model, tokenizer, cfg, torch.device("cpu")).run(SMILES, templates)


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
