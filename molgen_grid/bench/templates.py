"""Template building, the CPU-side work the constrained logit processor needs per prompt row.

For each SMILES: canonicalise, write the skeleton with a placeholder after every atom, tokenize the reference
string `[CONFORMER]{skeleton}[/CONFORMER]` with offsets, and mark each token COPY (forced) or FREE (strictly
inside a `<...>` coordinate block; a token that mixes both is COPY). Everything is derived from token offsets,
so a tokenizer that merges characters (`]<`, `>[`) gets correct templates too. Serial or in a thread pool (the
`template_building` axis); tokenization may be memoised by reference string (the `tokenizer_cache` axis).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from molgen_grid.bench.encoding import CONFORMER_CLOSE, CONFORMER_OPEN, skeleton


@dataclass(frozen=True)
class Template:
    reference: str
    token_ids: tuple[int, ...]
    #: Per token: True where the model writes freely (inside a coordinate block), False where it is forced.
    free: tuple[bool, ...]
    #: Per token: True at a FREE token followed by a COPY token whose text holds `>` (the public processor's
    #: look-ahead rule): a coordinate must not end in `,` or `-` there.
    block_comma_dash: tuple[bool, ...]


@dataclass
class TokenizerCache:
    """Tokenization by reference string, memoised when enabled; hits, misses and seconds are cell figures.

    A reference is tokenized once even when parallel template building asks for it from two threads at once:
    the second waits for the first's result (a hit), so the counts are the same in every pass."""

    enabled: bool
    hits: int = 0
    misses: int = 0
    #: Seconds spent inside the tokenizer, summed over threads.
    seconds: float = 0.0
    _store: dict[str, Future] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tokenize(self, tokenizer: Any, reference: str) -> tuple[list[int], list[tuple[int, int]]]:
        if not self.enabled:
            return self._encode(tokenizer, reference)
        with self._lock:
            found = self._store.get(reference)
            if found is None:
                self.misses += 1
                self._store[reference] = mine = Future()
            else:
                self.hits += 1
        if found is not None:
            return found.result()
        try:
            mine.set_result(self._encode(tokenizer, reference))
        except BaseException as error:
            mine.set_exception(error)
        return mine.result()

    def _encode(self, tokenizer: Any, reference: str) -> tuple[list[int], list[tuple[int, int]]]:
        started = time.perf_counter()
        encoded = tokenizer(reference, add_special_tokens=False, return_offsets_mapping=True)
        result = (list(encoded["input_ids"]), [tuple(o) for o in encoded["offset_mapping"]])
        with self._lock:
            self.seconds += time.perf_counter() - started
        return result


def inside_blocks(text: str) -> list[bool]:
    """Per character: strictly between a `<` and its `>`."""
    inside, out = False, []
    for char in text:
        if char == ">":
            inside = False
        out.append(inside)
        if char == "<":
            inside = True
    return out


def build_template(smiles: str, tokenizer: Any, cache: TokenizerCache) -> Template:
    reference = f"{CONFORMER_OPEN}{skeleton(smiles)}{CONFORMER_CLOSE}"
    ids, offsets = cache.tokenize(tokenizer, reference)
    inside = inside_blocks(reference)
    free = tuple(end > start and all(inside[start:end]) for start, end in offsets)
    return Template(reference, tuple(ids), free, look_ahead(ids, free, tokenizer))


def look_ahead(ids: list[int], free: tuple[bool, ...], tokenizer: Any) -> tuple[bool, ...]:
    """The public processor's rule, decoding the next token as it does (part of the template-building cost)."""
    return tuple(
        is_free and index + 1 < len(ids) and not free[index + 1] and ">" in tokenizer.decode([ids[index + 1]])
        for index, is_free in enumerate(free)
    )


@dataclass
class BuiltTemplates:
    templates: list[Template]
    seconds: float
    #: The pool's size as the pool object holds it (1: built in the calling thread).
    workers: int
    #: How many distinct threads built a template.
    threads: int


def resolve_workers(template_building: Any, cpus: int) -> int:
    """Threads for template building: 1 when serial; `auto` takes the CPUs the engine gave the cell."""
    if not template_building.parallel:
        return 1
    workers = template_building.workers
    return max(1, cpus if workers == "auto" else int(workers))


def build_templates(smiles: list[str], tokenizer: Any, cache: TokenizerCache, workers: int) -> BuiltTemplates:
    """One template per prompt row, in order; with workers > 1 in a thread pool (created per call, as the
    public runner did per batch, so its start-up cost is part of the figure)."""
    started = time.perf_counter()
    threads: set[int] = set()

    def build(one: str) -> Template:
        threads.add(threading.get_ident())
        return build_template(one, tokenizer, cache)

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            templates = list(pool.map(build, smiles))
            used = pool._max_workers
    else:
        templates, used = [build(s) for s in smiles], 1
    return BuiltTemplates(templates, time.perf_counter() - started, used, len(threads))
