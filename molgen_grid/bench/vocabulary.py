"""What the template processors need of a tokenizer's vocabulary, built once per tokenizer.

The public project's processor (3DMolGen, `constraint_logit_processor.py` at commit d2702887) scans the raw
vocabulary for the ids it blocks inside a coordinate block and for the `,`/`-` ids of its look-ahead rule.
Those scans touch every vocabulary entry, so a cell does them once per tokenizer and every batch's processor
reuses them: the per-batch cost left in a pass is the processor's own construction (timed as
`processor_build_s`), not a vocabulary scan. Device masks are cached per (device, width) for the same reason.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch

from molgen_grid.bench.encoding import TAGS


@dataclass
class VocabularyTables:
    #: One more than the largest id: the width of a vocabulary mask.
    size: int
    #: Ids blocked at a FREE position: raw vocabulary strings holding `<` or `>` (byte-fallback pieces such as
    #: `<0x3C>` included, as the reference scans raw strings), every id of the four tags' own tokenization,
    #: and BOS, EOS and PAD.
    blocked: frozenset[int]
    #: Ids whose raw string is made only of `,` and `-`: blocked too just before a closing `>`.
    comma_dash: frozenset[int]
    _masks: dict[tuple[str, str, int], torch.Tensor] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def mask(self, which: str, device: torch.device | str, width: int | None = None) -> torch.Tensor:
        """A boolean mask over `width` ids (the vocabulary's size by default; a model may pad its vocabulary
        past the tokenizer's, and those ids are never blocked), on `device`, built once."""
        width = self.size if width is None else width
        key = (which, str(device), width)
        found = self._masks.get(key)
        if found is not None:
            return found
        with self._lock:
            if key not in self._masks:
                ids = sorted(i for i in getattr(self, which) if i < width)
                mask = torch.zeros(width, dtype=torch.bool)
                mask[torch.tensor(ids, dtype=torch.long)] = True
                self._masks[key] = mask.to(device)
            return self._masks[key]


def token_strings(tokenizer: Any) -> list[str]:
    """The text of every vocabulary id (special tokens as written, byte-level pieces decoded)."""
    vocab = tokenizer.get_vocab()
    specials = set(tokenizer.all_special_tokens)
    strings = [""] * max(len(tokenizer), max(vocab.values()) + 1)
    for token, index in vocab.items():
        strings[index] = token if token in specials else tokenizer.convert_tokens_to_string([token])
    return strings


_TABLES: "weakref.WeakKeyDictionary[Any, VocabularyTables]" = weakref.WeakKeyDictionary()
_TABLES_LOCK = threading.Lock()


def vocabulary_tables(tokenizer: Any) -> VocabularyTables:
    """The tables of `tokenizer`, built on its first use and kept as long as the tokenizer lives."""
    with _TABLES_LOCK:
        tables = _TABLES.get(tokenizer)
        if tables is None:
            tables = _TABLES[tokenizer] = _build(tokenizer)
        return tables


def _build(tokenizer: Any) -> VocabularyTables:
    vocab = tokenizer.get_vocab()
    blocked = {i for token, i in vocab.items() if "<" in token or ">" in token}
    for tag in TAGS:
        blocked.update(tokenizer.encode(tag, add_special_tokens=False))
    blocked.update(i for i in (tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id)
                   if i is not None)
    comma_dash = {i for token, i in vocab.items() if token and set(token) <= {",", "-"}}
    size = max(len(tokenizer), max(vocab.values()) + 1)
    return VocabularyTables(size, frozenset(blocked), frozenset(comma_dash))
