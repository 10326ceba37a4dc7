"""The constrained logit processors: generation follows each prompt's template token by token.

`python` is the public project's reference: at every step it loops over the batch rows in Python. At a COPY
position the template token is forced; at a FREE position tokens that would break the format (anything with
`<` or `>`, the four tags, BOS/EOS/PAD, and just before a closing `>` tokens made only of `,` or `-`) are
blocked; past the template EOS is forced. It works on token strings, so merged-token tokenizers work too.
"""
from __future__ import annotations

import torch
from transformers import LogitsProcessor

from molgen_grid.bench.encoding import TAGS
from molgen_grid.bench.templates import Template


def _token_strings(tokenizer) -> list[str]:
    vocab = tokenizer.get_vocab()
    strings = [""] * max(len(tokenizer), max(vocab.values()) + 1)
    for token, index in vocab.items():
        strings[index] = tokenizer.convert_tokens_to_string([token]) if token not in tokenizer.all_special_tokens \
            else token
    return strings


class PythonTemplateProcessor(LogitsProcessor):
    """Per-row Python loop over the batch, as in the public project (one host round trip per row per step)."""

    def __init__(self, templates: list[Template], tokenizer, prompt_length: int, rows_per_template: int = 1) -> None:
        self.templates = templates
        self.prompt_length = prompt_length
        self.rows_per_template = rows_per_template
        self.eos = tokenizer.eos_token_id
        strings = _token_strings(tokenizer)
        specials = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}
        blocked = [i for i, s in enumerate(strings)
                   if i in specials or "<" in s or ">" in s or s in TAGS or s == ""]
        before_close = [i for i, s in enumerate(strings) if s and set(s) <= {",", "-"}]
        self.blocked = torch.tensor(sorted(set(blocked)), dtype=torch.long)
        self.blocked_before_close = torch.tensor(sorted(set(blocked) | set(before_close)), dtype=torch.long)
        self.closes = [[not t.free[i + 1] and strings[t.token_ids[i + 1]].startswith(">") if i + 1 < len(t.free)
                        else False for i in range(len(t.free))] for t in templates]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        for row in range(scores.shape[0]):
            index = row // self.rows_per_template
            template = self.templates[index]
            if step >= len(template.token_ids):
                self._force(scores, row, self.eos)
            elif not template.free[step]:
                self._force(scores, row, template.token_ids[step])
            else:
                blocked = self.blocked_before_close if self.closes[index][step] else self.blocked
                scores[row, blocked.to(scores.device)] = -float("inf")
        return scores

    @staticmethod
    def _force(scores: torch.FloatTensor, row: int, token: int) -> None:
        kept = scores[row, token].item()
        scores[row, :] = -float("inf")
        scores[row, token] = kept if kept != -float("inf") else 0.0
