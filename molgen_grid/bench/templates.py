"""Template building, the CPU-side work the constrained logit processor needs per prompt.

For each SMILES: canonicalise, write the skeleton with a placeholder after every atom, tokenize the reference
string `[CONFORMER]{skeleton}[/CONFORMER]` with offsets, and mark each token COPY (forced) or FREE (strictly
inside a `<...>` coordinate block; a token that mixes both is COPY). Serial or in a thread pool; the
tokenization may be memoised by reference string (the tokenizer cache axis).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from molgen_grid.bench.encoding import CONFORMER_CLOSE, CONFORMER_OPEN, skeleton


@dataclass(frozen=True)
class Template:
    reference: str
    token_ids: tuple[int, ...]
    #: Per token: True where the model writes freely (inside a coordinate block), False where it is forced.
    free: tuple[bool, ...]


@dataclass
class TokenizerCache:
    """Memoised tokenization by reference string; hits and misses are part of the cell's figures."""

    enabled: bool
    hits: int = 0
    misses: int = 0
    _store: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tokenize(self, tokenizer, reference: str) -> tuple[list[int], list[tuple[int, int]]]:
        if self.enabled:
            with self._lock:
                found = self._store.get(reference)
                if found is not None:
                    self.hits += 1
                    return found
                self.misses += 1
        encoded = tokenizer(reference, add_special_tokens=False, return_offsets_mapping=True)
        result = (encoded["input_ids"], encoded["offset_mapping"])
        if self.enabled:
            with self._lock:
                self._store[reference] = result
        return result


def inside_blocks(text: str) -> list[bool]:
    """Per character: strictly between a `<` and its `>`."""
    inside, out = False, []
    for char in text:
        if char == ">":
            inside = False
        out.append(inside and char != "<")
        if char == "<":
            inside = True
    return out


def build_template(smiles: str, tokenizer, cache: TokenizerCache) -> Template:
    reference = f"{CONFORMER_OPEN}{skeleton(smiles)}{CONFORMER_CLOSE}"
    ids, offsets = cache.tokenize(tokenizer, reference)
    inside = inside_blocks(reference)
    free = tuple(end > start and all(inside[start:end]) for start, end in offsets)
    return Template(reference, tuple(ids), free)


@dataclass
class BuiltTemplates:
    templates: list[Template]
    seconds: float


def build_templates(smiles: list[str], tokenizer, cache: TokenizerCache, workers: int) -> BuiltTemplates:
    """One template per prompt row, in order; with workers > 1, in a thread pool."""
    started = time.perf_counter()
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            templates = list(pool.map(lambda s: build_template(s, tokenizer, cache), smiles))
    else:
        templates = [build_template(s, tokenizer, cache) for s in smiles]
    return BuiltTemplates(templates, time.perf_counter() - started)
