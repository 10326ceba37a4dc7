"""The `prompt_cache` axis: each batch's prompts prefilled once and their KV cache reused by every generation of
the same molecule (`reuse`), or every generate() call prefilling its own prompt (`none`).

transformers' own way (its "prefix caching" recipe): run the model over the prompt into a `DynamicCache` and hand
generate() a `copy.deepcopy` of it with the full prompt; generate() feeds only the tokens the cache lacks. The
prefix stops one token short of the prompt, because generate() must run at least one token to score the first
new one. The prefill uses generate()'s own position ids for the (left-padded) attention mask, so a reused cache
holds what generate() would have computed itself and greedy output does not change.

A molecule's generations are rows next to each other (cell.py); the prefix is keyed by the batch's distinct
prompts, prefilled once per key and pass, and expanded to the batch's rows (`batch_select_indices`): at batch 1 a
molecule's later calls reuse its first call's prefix; in a batch, duplicated rows share one prefilled row. A
molecule whose generations a batch boundary splits is prefilled once per batch it appears in. Each timed pass
starts empty (`reset()`), so every pass pays its own prefills, inside its timed calls.

Assisted decoding (a draft or prompt lookup) ends `unsupported`: its first round feeds the whole prompt
whatever the cache holds, so the prefix would be counted twice (and greedy output changes).

Under a static cache the prefix is written into the cell's preallocated `StaticCache` with the cache's own
`update()`, so no timed call allocates one.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from transformers import DynamicCache, StaticCache

from molgen_grid.bench.attention import Unsupported
from molgen_grid.errors import InputError

#: `prompt_cache.mode` values (conf/prompt_cache/).
MODES = ("none", "reuse")


class PromptCache:
    """One cell's prompt prefixes: prefilled once per pass and batch of distinct prompts, copied for each call."""

    def __init__(self, prompt_cache_cfg: Any, model: Any, decoding_kind: str) -> None:
        self.mode = str(prompt_cache_cfg.mode)
        if self.mode not in MODES:
            raise InputError(f"prompt_cache.mode {self.mode!r} is unknown: use one of {', '.join(MODES)}")
        if self.mode == "reuse" and decoding_kind != "standard":
            raise Unsupported(f"prompt_cache=reuse with {decoding_kind} decoding: transformers' assisted decoding "
                              "feeds the whole prompt in its first round (prepare_inputs_for_generation with "
                              "next_sequence_length=None), on top of a prefilled cache")
        self.model = model
        self.prefixes: dict[tuple[str, ...], DynamicCache] = {}
        #: Rows the model prefilled and generate() calls that started from a prefix, in this pass.
        self.prefilled_rows = 0
        self.reused_calls = 0

    @property
    def enabled(self) -> bool:
        return self.mode == "reuse"

    def reset(self) -> None:
        """Before a pass: no prefix is kept from the last one, so each pass pays its own prefills."""
        self.prefixes, self.prefilled_rows, self.reused_calls = {}, 0, 0

    def start(self, smiles: tuple[str, ...], inputs: dict[str, torch.Tensor], encode: Any,
              static: StaticCache | None, beams: int = 1) -> DynamicCache | StaticCache:
        """The cache a generate() call over `smiles` (encoded as `inputs`) starts from: its prompts' prefix,
        prefilled now if no earlier call of this pass had these prompts, in `static` when the cell has one.
        generate() expands its inputs to `beams` rows per prompt but leaves a given cache alone: done here."""
        distinct = tuple(dict.fromkeys(smiles))
        if distinct not in self.prefixes:
            self.prefixes[distinct] = self.prefill(encode(distinct))
        else:
            self.reused_calls += 1
        prefix = copy.deepcopy(self.prefixes[distinct])
        rows = [distinct.index(s) for s in smiles for _ in range(beams)]
        prefix.batch_select_indices(torch.tensor(rows, device=self.model.device))
        if prefix.get_seq_length() != inputs["input_ids"].shape[1] - 1:
            raise RuntimeError(f"prompt prefix of {prefix.get_seq_length()} tokens for prompts of "
                               f"{inputs['input_ids'].shape[1]}: the batch is padded unlike its distinct prompts")
        if static is None:
            return prefix
        for index, layer in enumerate(prefix.layers):
            static.update(layer.keys, layer.values, index)
        return static

    def prefill(self, inputs: dict[str, torch.Tensor]) -> DynamicCache:
        """The model's cache over every prompt token but the last, with generate()'s position ids."""
        ids, mask = inputs["input_ids"][:, :-1], inputs["attention_mask"][:, :-1]
        positions = self.model._prepare_position_ids_for_generation(ids, {"attention_mask": mask})
        cache = DynamicCache(config=self.model.config)
        self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                   logits_to_keep=1)
        self.prefilled_rows += ids.shape[0]
        return cache

    def applied(self) -> dict[str, Any]:
        """What the last pass did, read from this object's counts."""
        return {"mode": self.mode, "prefilled_rows": self.prefilled_rows if self.enabled else None,
                "reused_calls": self.reused_calls if self.enabled else None}
