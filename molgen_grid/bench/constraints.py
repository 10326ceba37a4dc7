"""The constrained logit processor: generation follows each row's template token by token.

`python` is the public project's reference: at every step it loops over the batch rows in Python. At a COPY
position the template token is forced; at a FREE position tokens that would break the format (anything with
`<` or `>`, the four tags, BOS/EOS/PAD/UNK, and just before a closing `>` tokens made only of `,` or `-`) are
blocked; past the template EOS is forced. Reading `.item()` per row keeps the reference's host-device sync per
row per step, which is what this axis measures. It works on token strings, so merged-token tokenizers work too.
"""
from __future__ import annotations

from typing import Any

import torch
from transformers import LogitsProcessor

from molgen_grid.bench.encoding import TAGS
from molgen_grid.bench.templates import Template


def token_strings(tokenizer: Any) -> list[str]:
    """The text of every vocabulary id (special tokens as written, byte-level pieces decoded)."""
    vocab = tokenizer.get_vocab()
    specials = set(tokenizer.all_special_tokens)
    strings = [""] * max(len(tokenizer), max(vocab.values()) + 1)
    for token, index in vocab.items():
        strings[index] = token if token in specials else tokenizer.convert_tokens_to_string([token])
    return strings


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
        strings = token_strings(tokenizer)
        specials = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}
        blocked = {i for i, s in enumerate(strings) if i in specials or "<" in s or ">" in s or s in TAGS or s == ""}
        separators = {i for i, s in enumerate(strings) if s and set(s) <= {",", "-"}}
        self.blocked = torch.tensor(sorted(blocked), dtype=torch.long)
        self.blocked_before_close = torch.tensor(sorted(blocked | separators), dtype=torch.long)

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
