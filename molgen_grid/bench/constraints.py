"""The constrained logit processor: generation follows each row's template token by token.

Both kinds have the same semantics: at a COPY position the template token is forced (keeping its score, or 0
where it was -inf); at a FREE position tokens that would break the format (anything with `<` or `>`, the four
tags, BOS/EOS/PAD/UNK, and just before a closing `>` tokens made only of `,` or `-`) are blocked; past the
template EOS is forced. Row r follows template `r // rows_per_template`. Both work on token strings, so
merged-token tokenizers work too.

- `python` is the public project's reference: at every step it loops over the batch rows in Python, reading
  `.item()` per row, which keeps the reference's host-device sync per row per step (what this axis measures).
- `tensor` computes the same masks on the scores' device: per-row tables (forced token per step, "before
  close" flag) and boolean vocabulary masks are built once at construction, and each step is a handful of
  tensor ops over the whole batch with no Python per row and no host sync, so it can run under a static
  cache and CUDA graphs. Under greedy decoding and beam search its outputs equal the python one's.

`make_processor` builds the processor of a `logit_processor.kind`.
"""
from __future__ import annotations

from typing import Any

import torch
from transformers import LogitsProcessor

from molgen_grid.bench.encoding import TAGS
from molgen_grid.bench.templates import Template
from molgen_grid.errors import InputError

#: `logit_processor.kind` values.
KINDS = ("none", "python", "tensor")


def token_strings(tokenizer: Any) -> list[str]:
    """The text of every vocabulary id (special tokens as written, byte-level pieces decoded)."""
    vocab = tokenizer.get_vocab()
    specials = set(tokenizer.all_special_tokens)
    strings = [""] * max(len(tokenizer), max(vocab.values()) + 1)
    for token, index in vocab.items():
        strings[index] = token if token in specials else tokenizer.convert_tokens_to_string([token])
    return strings


def blocked_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Ids blocked at a FREE position, and those blocked just before a closing `>` (also `,`/`-`-only tokens)."""
    strings = token_strings(tokenizer)
    specials = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}
    blocked = {i for i, s in enumerate(strings) if i in specials or "<" in s or ">" in s or s in TAGS or s == ""}
    separators = {i for i, s in enumerate(strings) if s and set(s) <= {",", "-"}}
    return sorted(blocked), sorted(blocked | separators)


class PythonTemplateProcessor(LogitsProcessor):
    """Per-row Python loop over the batch, as in the public project.

    Row r of the batch follows `templates[r // rows_per_template]` (beam search expands each row into beams).
    """

    def __init__(self, templates: list[Template], tokenizer: Any, prompt_length: int,
                 rows_per_template: int = 1) -> None:
        self.templates = templates
        self.prompt_length = prompt_length
        self.rows_per_template = rows_per_template
        self.eos = tokenizer.eos_token_id
        blocked, before_close = blocked_ids(tokenizer)
        self.blocked = torch.tensor(blocked, dtype=torch.long)
        self.blocked_before_close = torch.tensor(before_close, dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        for row in range(scores.shape[0]):
            template = self.templates[row // self.rows_per_template]
            if step >= len(template.token_ids):
                self._force(scores, row, self.eos)
            elif not template.free[step]:
                self._force(scores, row, template.token_ids[step])
            else:
                blocked = self.blocked_before_close if template.before_close[step] else self.blocked
                scores[row, blocked.to(scores.device)] = -float("inf")
        return scores

    @staticmethod
    def _force(scores: torch.FloatTensor, row: int, token: int) -> None:
        """Leave only `token` possible (keeping its score, so beam scores stay comparable)."""
        kept = scores[row, token].item()
        scores[row, :] = -float("inf")
        scores[row, token] = kept if kept != -float("inf") else 0.0


class TensorTemplateProcessor(LogitsProcessor):
    """The python processor's semantics as whole-batch tensor ops on the scores' device.

    Built once per batch: `forced[r, t]` is the token forced on row r at step t (-1 where the step is FREE),
    with one extra column past the longest template that forces EOS (later steps read that column);
    `before_close[r, t]` picks the stricter mask; `blocked` and `blocked_before_close` are boolean vocabulary
    masks. A call reads one column (the step is a Python int from `input_ids`' shape) and never reads a value
    back to the host, so no step waits on the device.
    """

    def __init__(self, templates: list[Template], tokenizer: Any, prompt_length: int,
                 rows_per_template: int = 1, device: torch.device | str | None = None) -> None:
        self.prompt_length = prompt_length
        self.rows_per_template = rows_per_template
        self.rows = len(templates) * rows_per_template
        eos = tokenizer.eos_token_id
        lengths = [len(t.token_ids) for t in templates]
        self.steps = max(lengths, default=0) + 1  # every template, then the EOS column
        forced, before_close = [], []
        for template, length in zip(templates, lengths):
            row = [-1 if free else token for token, free in zip(template.token_ids, template.free)]
            forced.append(row + [eos] * (self.steps - length))
            before_close.append(list(template.before_close) + [False] * (self.steps - length))
        shape = (len(templates), self.steps)
        self.forced = self._rows(torch.tensor(forced, dtype=torch.long).reshape(shape), device)
        self.before_close = self._rows(torch.tensor(before_close, dtype=torch.bool).reshape(shape), device)
        self.lengths = self._rows(torch.tensor(lengths, dtype=torch.long), device)
        self.device = self.forced.device  # as torch resolves it (`cuda` -> `cuda:0`)
        blocked, blocked_before_close = blocked_ids(tokenizer)
        vocab = max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)  # as token_strings
        self.blocked = self._mask(blocked, vocab)
        self.blocked_before_close = self._mask(blocked_before_close, vocab)
        self._fitted: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _rows(self, per_template: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
        """Per template -> per batch row (beams of one prompt are consecutive rows), on the device."""
        return per_template.repeat_interleave(self.rows_per_template, dim=0).to(device)

    def _mask(self, ids: list[int], vocab: int) -> torch.Tensor:
        mask = torch.zeros(vocab, dtype=torch.bool)
        mask[torch.tensor(ids, dtype=torch.long)] = True
        return mask.to(self.device)

    def to(self, device: torch.device | str) -> "TensorTemplateProcessor":
        """Move the tables (once, outside any captured step) to another device."""
        for name in ("forced", "before_close", "lengths", "blocked", "blocked_before_close"):
            setattr(self, name, getattr(self, name).to(device))
        self.device = self.forced.device
        self._fitted = {}
        return self

    def _vocab(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The masks fitted to the scores' vocabulary width (a model may pad its vocabulary past the
        tokenizer's: those ids are not blocked, as in the python processor). Built once per width, on the
        first call (before any graph capture)."""
        fitted = self._fitted.get(size)
        if fitted is None:
            def fit(mask: torch.Tensor) -> torch.Tensor:
                if mask.shape[0] >= size:
                    return mask[:size]
                return torch.cat([mask, mask.new_zeros(size - mask.shape[0])])
            fitted = self._fitted[size] = (fit(self.blocked), fit(self.blocked_before_close))
        return fitted

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != self.rows:
            raise ValueError(f"the tensor logit processor was built for {self.rows} rows, the scores have "
                             f"{scores.shape[0]}")
        if scores.device != self.device:  # built without the scores' device: move once, on the first call
            self.to(scores.device)
        step = min(input_ids.shape[1] - self.prompt_length, self.steps - 1)
        blocked, blocked_before_close = self._vocab(scores.shape[1])
        forced = self.forced[:, step]  # (rows,), -1 where FREE
        is_forced = (forced >= 0).unsqueeze(1)
        # COPY (or past the template): only the forced token, keeping its score (0 where it was -inf).
        index = forced.clamp(min=0).unsqueeze(1)  # FREE rows read id 0, and take the other branch below
        kept = scores.gather(1, index)
        kept = kept.masked_fill(kept == -float("inf"), 0.0)
        only = torch.full_like(scores, -float("inf")).scatter(1, index, kept)
        # FREE: the blocked set, or the stricter one just before a closing `>`.
        mask = torch.where(self.before_close[:, step].unsqueeze(1), blocked_before_close.unsqueeze(0),
                           blocked.unsqueeze(0))
        free = scores.masked_fill(mask, -float("inf"))
        return torch.where(is_forced, only, free)


def make_processor(kind: str, templates: list[Template] | None, tokenizer: Any, prompt_length: int,
                   rows_per_template: int = 1, device: torch.device | str | None = None) -> LogitsProcessor | None:
    """The processor of `logit_processor.kind` for one batch (None for `none`); `device` is the scores' device."""
    if kind == "none":
        return None
    if kind not in KINDS:
        raise InputError(f"logit_processor.kind {kind!r} is unknown: use one of {', '.join(KINDS)}")
    if templates is None:
        raise ValueError(f"the {kind} logit processor needs the batch's templates")
    if kind == "python":
        return PythonTemplateProcessor(templates, tokenizer, prompt_length, rows_per_template=rows_per_template)
    return TensorTemplateProcessor(templates, tokenizer, prompt_length, rows_per_template=rows_per_template,
                                   device=device)
