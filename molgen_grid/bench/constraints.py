"""The template logit processors: generation follows each row's template token by token.

Both kinds follow the public project's processor (3DMolGen `constraint_logit_processor.py`, commit d2702887,
"v2.1_precompute_mask_lookahead"): at a COPY position the template token is forced (score 0, every other id
-inf); at a FREE position (inside a coordinate block) the ids of `vocabulary.VocabularyTables.blocked` are
blocked, and at a FREE position whose next template token holds `>` the `,`/`-`-only ids too; past the
template EOS is forced (score 0). Row r follows template `r // rows_per_template` (beam search puts a prompt's
beams in consecutive rows; the reference has no beams).

- `python` is the reference itself, step for step: a Python loop over the batch rows that tests the template's
  device-side flags with `if` (an implicit `.item()`, a host-device sync per row per step on CUDA) and writes
  the masks through boolean indexing. Its only costs beyond the reference's are none; it builds its device
  tensors in the constructor (timed as `processor_build_s`) instead of on its first call.
- `tensor` computes the same scores with whole-batch tensor ops on the scores' device: per-row tables (forced
  token per step, look-ahead flag per step) built once per batch, vocabulary masks once per tokenizer, and no
  Python per row and no host read per step, so it can run under a static cache and CUDA graphs.

`grammar` (grammar.py) constrains the text instead of the tokens: exact conformers with numbers of any length.
`make_processor` builds the processor of a `logit_processor.kind`.
"""
from __future__ import annotations

from typing import Any

import torch
from transformers import LogitsProcessor

from molgen_grid.bench.grammar import GrammarProcessor
from molgen_grid.bench.templates import Template
from molgen_grid.bench.vocabulary import vocabulary_tables
from molgen_grid.errors import InputError

#: `logit_processor.kind` values.
KINDS = ("none", "python", "tensor", "grammar")
NEG_INF = -float("inf")


class PythonTemplateProcessor(LogitsProcessor):
    """The public project's per-row processor (see the module docstring), with beams mapped to templates."""

    def __init__(self, templates: list[Template], tokenizer: Any, prompt_length: int,
                 rows_per_template: int = 1, device: torch.device | str | None = None) -> None:
        self.prompt_length = prompt_length
        self.rows_per_template = rows_per_template
        self.eos = tokenizer.eos_token_id
        self.tables = vocabulary_tables(tokenizer)
        self.lengths = [len(t.token_ids) for t in templates]
        self.ref_ids = [torch.tensor(t.token_ids, dtype=torch.long, device=device) for t in templates]
        self.is_free = [torch.tensor(t.free, dtype=torch.bool, device=device) for t in templates]
        self.block_comma_dash = [torch.tensor(t.block_comma_dash, dtype=torch.bool, device=device)
                                 for t in templates]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        pos = input_ids.shape[1] - self.prompt_length
        blocked = self.tables.mask("blocked", scores.device, scores.shape[1])
        comma_dash = self.tables.mask("comma_dash", scores.device, scores.shape[1])
        for row in range(scores.shape[0]):
            template = row // self.rows_per_template
            if pos >= self.lengths[template]:
                scores[row, :] = NEG_INF
                scores[row, self.eos] = 0.0
            elif self.is_free[template][pos]:
                scores[row, blocked] = NEG_INF
                if self.block_comma_dash[template][pos]:
                    scores[row, comma_dash] = NEG_INF
            else:
                scores[row, :] = NEG_INF
                scores[row, self.ref_ids[template][pos]] = 0.0
        return scores


class TensorTemplateProcessor(LogitsProcessor):
    """The python processor's scores as whole-batch tensor ops on the scores' device.

    Built once per batch: `forced[r, t]` is the token forced on row r at step t (-1 where the step is FREE),
    with one extra column past the longest template that forces EOS (later steps read that column), and
    `look_ahead[r, t]` adds the `,`/`-` ids to the blocked ones. A call reads one column (the step is a Python
    int from `input_ids`' shape) and never reads a value back to the host, so no step waits on the device.
    """

    def __init__(self, templates: list[Template], tokenizer: Any, prompt_length: int,
                 rows_per_template: int = 1, device: torch.device | str | None = None) -> None:
        self.prompt_length = prompt_length
        self.rows = len(templates) * rows_per_template
        self.tables = vocabulary_tables(tokenizer)
        eos = tokenizer.eos_token_id
        self.steps = max((len(t.token_ids) for t in templates), default=0) + 1  # the templates, then EOS
        forced, look_ahead = [], []
        for template in templates:
            tail = self.steps - len(template.token_ids)
            forced.append([-1 if free else token for token, free in zip(template.token_ids, template.free)]
                          + [eos] * tail)
            look_ahead.append(list(template.block_comma_dash) + [False] * tail)
        shape = (len(templates), self.steps)
        self.forced = torch.tensor(forced, dtype=torch.long).reshape(shape).repeat_interleave(
            rows_per_template, dim=0).to(device)
        self.look_ahead = torch.tensor(look_ahead, dtype=torch.bool).reshape(shape).repeat_interleave(
            rows_per_template, dim=0).to(device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != self.rows:
            raise ValueError(f"the tensor logit processor was built for {self.rows} rows, the scores have "
                             f"{scores.shape[0]}")
        if scores.device != self.forced.device:  # built without the scores' device: move once, on the first call
            self.forced, self.look_ahead = self.forced.to(scores.device), self.look_ahead.to(scores.device)
        step = min(input_ids.shape[1] - self.prompt_length, self.steps - 1)
        blocked = self.tables.mask("blocked", scores.device, scores.shape[1])
        comma_dash = self.tables.mask("comma_dash", scores.device, scores.shape[1])
        forced = self.forced[:, step].unsqueeze(1)  # (rows, 1), -1 where FREE
        # COPY (or past the template): only the forced token, at score 0; FREE rows read id 0 and are not kept.
        only = torch.full_like(scores, NEG_INF).scatter(1, forced.clamp(min=0), 0.0)
        mask = blocked.unsqueeze(0) | (comma_dash.unsqueeze(0) & self.look_ahead[:, step].unsqueeze(1))
        return torch.where(forced >= 0, only, scores.masked_fill(mask, NEG_INF))


def make_processor(kind: str, templates: list[Template] | None, tokenizer: Any, prompt_length: int,
                   rows_per_template: int = 1, device: torch.device | str | None = None) -> LogitsProcessor | None:
    """The processor of `logit_processor.kind` for one batch (None for `none`); `device` is the scores' device."""
    if kind == "none":
        return None
    if kind not in KINDS:
        raise InputError(f"logit_processor.kind {kind!r} is unknown: use one of {', '.join(KINDS)}")
    if templates is None:
        raise ValueError(f"the {kind} logit processor needs the batch's templates")
    processor = {"python": PythonTemplateProcessor, "tensor": TensorTemplateProcessor,
                 "grammar": GrammarProcessor}[kind]
    return processor(templates, tokenizer, prompt_length, rows_per_template, device)
