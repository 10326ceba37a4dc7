"""`generate()` over one batch with the cell's settings: prompts, sampling, KV cache, SDPA backend, logit processor.

Returns what the measurement needs: the generated text and real token count of each row, the wall time of the
call and its time to first token.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from transformers import LogitsProcessorList

from molgen_grid.bench.constraints import make_processor
from molgen_grid.bench.encoding import SMILES_CLOSE, SMILES_OPEN
from molgen_grid.bench.measure import FirstTokenClock
from molgen_grid.bench.templates import Template
from molgen_grid.errors import InputError

#: `attention.sdpa_backend` values: short names, or torch's SDPBackend member names in any case.
SDPA_BACKENDS = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION",
                 "math": "MATH"}


def prompt(smiles: str) -> str:
    """The inference prompt; BOS is not written here: the tokenizer adds it, as it did in training."""
    return f"{SMILES_OPEN}{smiles}{SMILES_CLOSE}"


def sampling_kwargs(sampling: Any) -> dict[str, Any]:
    """generate()'s sampling arguments; null entries are left to the model's generation config."""
    return {k: v for k, v in dict(sampling).items() if v is not None}


def count_generated(new_tokens: list[list[int]], eos: int) -> list[int]:
    """Generated tokens per row, up to and including its first EOS: never the padding after it."""
    return [row.index(eos) + 1 if eos in row else len(row) for row in new_tokens]


@contextlib.contextmanager
def sdpa_backend(name: str | None) -> Iterator[None]:
    """Force one SDPA backend (the sdpa_* attention options); no backend named: PyTorch chooses."""
    if name is None:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    member = SDPA_BACKENDS.get(str(name).lower(), str(name).upper())
    if member not in SDPBackend.__members__:
        raise InputError(f"attention.sdpa_backend {name!r} is unknown: use one of {', '.join(SDPA_BACKENDS)} or null")
    with sdpa_kernel(getattr(SDPBackend, member)):
        yield


@dataclass
class BatchRun:
    texts: list[str]
    tokens_per_row: list[int]
    seconds: float
    ttft_s: float | None


class Generator:
    """Runs one batch of prompt rows through generate() with the cell's settings."""

    def __init__(self, model: Any, tokenizer: Any, cfg: Any, device: torch.device) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.kwargs: dict[str, Any] = {
            **sampling_kwargs(cfg.sampling),
            "max_new_tokens": int(cfg.max_new_tokens),
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            # transformers compiles the decode step by itself on CUDA with a static cache: only when asked for.
            "disable_compile": not bool(cfg.kv_cache.get("compile", False)),
        }
        if cfg.kv_cache.implementation == "static":
            self.kwargs["cache_implementation"] = "static"
        self.logit_processor = str(cfg.logit_processor.kind)
        self.constrained = self.logit_processor != "none"
        self.num_beams = int(self.kwargs.get("num_beams", 1))
        self.sdpa_backend = cfg.attention.get("sdpa_backend")
        self.clock = FirstTokenClock(device)

    def encode(self, smiles: list[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer([prompt(s) for s in smiles], return_tensors="pt", padding=True)
        return {k: v.to(self.device) for k, v in encoded.items()}

    def run(self, smiles: list[str], templates: list[Template] | None) -> BatchRun:
        """One generate() call over `smiles` (one row each), following `templates` when constrained."""
        inputs = self.encode(smiles)
        processors = LogitsProcessorList()
        processor = make_processor(self.logit_processor, templates, self.tokenizer, inputs["input_ids"].shape[1],
                                   rows_per_template=self.num_beams, device=self.device)
        if processor is not None:
            processors.append(processor)
        # Last in the list: its first call marks the first token's logits, after every other processor's work.
        processors.append(self.clock.logits_hook())
        with torch.inference_mode(), sdpa_backend(self.sdpa_backend):
            self.clock.start()
            output = self.model.generate(**inputs, **self.kwargs, logits_processor=processors)
            seconds, ttft_s = self.clock.stop()
        new = output[:, inputs["input_ids"].shape[1]:].tolist()
        counts = count_generated(new, self.tokenizer.eos_token_id)
        texts = [self.decode(row[:n]) for row, n in zip(new, counts)]
        return BatchRun(texts, counts, seconds, ttft_s)

    def decode(self, ids: list[int]) -> str:
        """The generated text with the tags kept (they are the format) and BOS/EOS/PAD removed."""
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        for special in {self.tokenizer.eos_token, self.tokenizer.pad_token, self.tokenizer.bos_token} - {None}:
            text = text.replace(special, "")
        return text
