"""The work of one cell, decided before anything is timed: its batches, the steps each may run, one cache size.

Cells are compared by what they measure, so every cell of a comparison must do the same work. A constrained
row stops at the end of its template; an unconstrained one runs until `max_new_tokens` (an untrained model
never writes EOS). `workload=matched` makes every batch run exactly the steps its constrained twin would
(the longest template of the batch, plus EOS, at most `max_new_tokens`), with or without a processor, so processor on and off are timed
over equal decode steps; `workload=free` lets each row stop where it stops, up to `max_new_tokens` (the
public runner's behaviour). The static cache gets one size for the whole cell (its longest prompt plus its
most steps), never a global maximum, so no batch changes its shape inside a timed pass, and the distinct
batch shapes are known before warm-up, which runs each once. The `grammar` processor writes numbers of any
length, so its batches get the longest text its grammar allows and no twin runs exactly its steps: compare it
by `step_ms`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from molgen_grid.bench.encoding import prompt
from molgen_grid.bench.grammar import max_new_tokens as grammar_steps
from molgen_grid.bench.templates import TokenizerCache, build_template
from molgen_grid.errors import InputError

WORKLOADS = ("matched", "free")


@dataclass(frozen=True)
class Batch:
    smiles: tuple[str, ...]
    #: Tokens of the longest prompt: every row is left-padded to it.
    prompt_length: int
    max_new_tokens: int
    #: Set only where a batch must run its steps whatever it writes (`matched` without a processor).
    min_new_tokens: int | None

    @property
    def shape(self) -> tuple[int, int, int, int | None]:
        """What a compile, a CUDA graph or an allocation depends on: rows, prompt, steps."""
        return len(self.smiles), self.prompt_length, self.max_new_tokens, self.min_new_tokens


@dataclass(frozen=True)
class Workload:
    mode: str
    batches: tuple[Batch, ...]

    @property
    def cache_length(self) -> int:
        """The static cache's one size: the cell's longest prompt plus its most steps."""
        return max(b.prompt_length + b.max_new_tokens for b in self.batches)

    def distinct(self) -> list[Batch]:
        """One batch of each shape, in order of first appearance: what warm-up runs."""
        first: dict[tuple, Batch] = {}
        for batch in self.batches:
            first.setdefault(batch.shape, batch)
        return list(first.values())


def constrained_steps(smiles: str, tokenizer: Any, kind: str = "python") -> int:
    """The most steps a row takes under a processor: its template's tokens, then EOS (`python`, `tensor`, and
    the unconstrained twin); under `grammar`, the longest text the grammar allows (numbers vary in length)."""
    template = build_template(smiles, tokenizer, TokenizerCache(False))
    return grammar_steps(template) if kind == "grammar" else len(template.token_ids) + 1


def plan_workload(rows: list[str], batch_size: int, tokenizer: Any, kind: str, mode: str,
                  max_new_tokens: int) -> Workload:
    """Batches of `rows` (one SMILES per generated row) with the steps `mode` gives them."""
    if mode not in WORKLOADS:
        raise InputError(f"workload={mode!r} is unknown: use one of {', '.join(WORKLOADS)}")
    steps = {s: constrained_steps(s, tokenizer, kind) for s in dict.fromkeys(rows)}
    batches = []
    for start in range(0, len(rows), batch_size):
        chunk = tuple(rows[start:start + batch_size])
        twin = min(max_new_tokens, max(steps[s] for s in chunk))  # the constrained twin stops there too
        if kind != "none":
            budget, least = twin, None
        elif mode == "matched":
            budget, least = twin, twin
        else:
            budget, least = max_new_tokens, None
        length = max(len(tokenizer(prompt(s))["input_ids"]) for s in chunk)
        batches.append(Batch(chunk, length, budget, least))
    return Workload(mode, tuple(batches))
