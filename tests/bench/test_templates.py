"""Templates: COPY/FREE classification through offsets, the tokenizer cache, serial and parallel building."""
from __future__ import annotations

from omegaconf import OmegaConf

from molgen_grid.bench.encoding import PLACEHOLDER
from molgen_grid.bench.templates import TokenizerCache, build_template, build_templates, resolve_workers
from molgen_grid.bench.tokenizer import build_tokenizer


def test_copy_and_free_positions() -> None:
    tokenizer = build_tokenizer()
    template = build_template("OC", tokenizer, TokenizerCache(False))
    assert template.reference == f"[CONFORMER][C]{PLACEHOLDER}[O]{PLACEHOLDER}[/CONFORMER]"
    tokens = tokenizer.convert_ids_to_tokens(list(template.token_ids))
    free = "".join(t for t, f in zip(tokens, template.free) if f)
    assert free == "0.0000,0.0000,0.0000" * 2
    assert not any(f for t, f in zip(tokens, template.free) if t in "<>[]")
    closes = [tokens[i] for i, c in enumerate(template.block_comma_dash) if c]
    assert closes == ["0", "0"]  # the last digit of each block: the next token, `>`, closes it


def test_tokenizer_cache_counts_hits() -> None:
    tokenizer = build_tokenizer()
    cache = TokenizerCache(True)
    built = build_templates(["CCO", "OCC", "c1ccccc1"], tokenizer, cache, workers=1)
    assert (cache.hits, cache.misses) == (1, 2)  # OCC canonicalises to CCO's reference
    assert built.templates[0] == built.templates[1] and built.seconds > 0 and cache.seconds > 0
    uncached = TokenizerCache(False)
    build_templates(["CCO", "OCC"], tokenizer, uncached, workers=1)
    assert (uncached.hits, uncached.misses) == (0, 0)


def test_parallel_equals_serial() -> None:
    tokenizer = build_tokenizer()
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C[C@H](N)C(=O)O"] * 2
    serial = build_templates(smiles, tokenizer, TokenizerCache(False), workers=1).templates
    parallel = build_templates(smiles, tokenizer, TokenizerCache(True), workers=3).templates
    assert serial == parallel


def test_workers() -> None:
    assert resolve_workers(OmegaConf.create({"parallel": False, "workers": 8}), cpus=4) == 1
    assert resolve_workers(OmegaConf.create({"parallel": True, "workers": "auto"}), cpus=4) == 4
    assert resolve_workers(OmegaConf.create({"parallel": True, "workers": 3}), cpus=4) == 3
