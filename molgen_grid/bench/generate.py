"""`generate()` over the cell's batches: prompts, sampling settings, cache, logit processor, token counts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessorList

from molgen_grid.bench.constraints import PythonTemplateProcessor
from molgen_grid.bench.encoding import SMILES_CLOSE, SMILES_OPEN
from molgen_grid.bench.measure import Clock
from molgen_grid.bench.templates import Template


def prompt(smiles: str) -> str:
    return f"{SMILES_OPEN}{smiles}{SMILES_CLOSE}"


def sampling_kwargs(sampling: Any) -> dict[str, Any]:
    """generate()'s sampling arguments; unset (null) entries are left to the model's generation config."""
    return {k: v for k, v in dict(sampling).items() if v is not None}


@dataclass
class BatchRun:
    texts: list[str]
    tokens_per_row: list[int]
    seconds: float


def count_generated(new_tokens: torch.Tensor, eos: int) -> list[int]:
    """Generated tokens per row, up to and including its first EOS: never the padding after it."""
    counts = []
    for row in new_tokens.tolist():
        counts.append(row.index(eos) + 1 if eos in row else len(row))
    return counts


class Generator:
    """Runs one batch of prompts through generate() with the cell's settings."""

    def __init__(self, model, tokenizer, cfg: Any, device: torch.device) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.kwargs: dict[str, Any] = {
            **sampling_kwargs(cfg.sampling),
            "max_new_tokens": int(cfg.max_new_tokens),
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "disable_compile": not bool(cfg.kv_cache.get("compile", False)),
        }
        if cfg.kv_cache.implementation == "static":
            self.kwargs["cache_implementation"] = "static"
        self.constrained = cfg.logit_processor.kind == "python"
        self.num_beams = int(self.kwargs.get("num_beams", 1))

    def encode(self, smiles: list[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer([prompt(s) for s in smiles], return_tensors="pt", padding=True)
        return {k: v.to(self.device) for k, v in encoded.items()}

    def run(self, smiles: list[str], templates: list[Template] | None, max_new_tokens: int | None = None) -> BatchRun:
        inputs = self.encode(smiles)
        kwargs = dict(self.kwargs)
        if max_new_tokens is not None:
            kwargs["max_new_tokens"] = max_new_tokens
        if self.constrained:
            processor = PythonTemplateProcessor(templates, self.tokenizer, inputs["input_ids"].shape[1],
                                                rows_per_template=self.num_beams)
            kwargs["logits_processor"] = LogitsProcessorList([processor])
        with torch.inference_mode(), Clock(self.device) as clock:
            output = self.model.generate(**inputs, **kwargs)
        new = output[:, inputs["input_ids"].shape[1]:].cpu()
        counts = count_generated(new, self.tokenizer.eos_token_id)
        texts = [self.decode(row[:n]) for row, n in zip(new.tolist(), counts)]
        return BatchRun(texts, counts, clock.seconds)

    def decode(self, ids: list[int]) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        for special in {self.tokenizer.eos_token, self.tokenizer.pad_token, self.tokenizer.bos_token} - {None}:
            text = text.replace(special, "")
        return text
