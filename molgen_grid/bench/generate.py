"""`generate()` over one batch with the cell's settings: sampling, KV cache, compile, SDPA backend, processor,
decoding (a draft model or prompt lookup: decoding.py), the prompt's KV cache prefilled once and reused
(prompt_cache.py).

What each call really ran is read back from the objects generate() used, not from the config: the generation
config and logits processors it built (`GenerateProbe`), the cache it returned, the processor's class. Tests
and summaries compare those with the options, so an option that stops reaching generate() shows.

The static cache has one size per cell (see workload.py) and one object per batch row count, allocated on its
first call (in warm-up) and reset before every later one, so no timed pass allocates a cache. `static_compiled`
compiles the decode step the same way on every device: the model's forward is wrapped so that one-token steps
go through `torch.compile` (transformers' own CompileConfig) and the prefill runs eagerly, in greedy, sampling
and beam search alike; transformers' automatic compile (CUDA only, and never in beam search) stays off.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from transformers import CompileConfig, LogitsProcessorList, StaticCache, StoppingCriteriaList

from molgen_grid.bench.attention import sdpa_backend
from molgen_grid.bench.constraints import make_processor
from molgen_grid.bench.decoding import Decoding
from molgen_grid.bench.encoding import prompt
from molgen_grid.bench.measure import StepClock
from molgen_grid.bench.prompt_cache import PromptCache
from molgen_grid.bench.templates import Template
from molgen_grid.bench.workload import Batch

#: The sampling settings generate() received, read back from its generation config and warpers.
GENERATION_KEYS = ("do_sample", "num_beams", "temperature", "top_k", "top_p", "min_p", "max_new_tokens",
                   "min_new_tokens")


def sampling_kwargs(sampling: Any) -> dict[str, Any]:
    """generate()'s sampling arguments; null entries are left to the model's generation config."""
    return {k: v for k, v in dict(sampling).items() if v is not None}


def count_generated(new_tokens: list[list[int]], eos: int) -> list[int]:
    """Generated tokens per row, up to and including its first EOS: never the padding after it."""
    return [row.index(eos) + 1 if eos in row else len(row) for row in new_tokens]


class DecodeStepCompiler:
    """The model's forward, with its one-token (decode) calls routed through torch.compile; prefills stay eager.

    It counts the calls each way, so a summary can show that the compiled step really ran.
    """

    def __init__(self, model: Any) -> None:
        self.config = getattr(model.generation_config, "compile_config", None) or CompileConfig()
        self.eager = model.forward
        self.compiled = torch.compile(self.eager, **self.config.to_dict())
        self.calls = {"compiled": 0, "eager": 0}
        model.forward = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ids = kwargs.get("input_ids")
        decode = ids is not None and ids.shape[1] == 1
        self.calls["compiled" if decode else "eager"] += 1
        return (self.compiled if decode else self.eager)(*args, **kwargs)


@dataclass
class GenerateProbe:
    """Records what generate() built for its last call: its generation config and its logits processors."""

    model: Any
    seen: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        build: Callable[..., Any] = self.model._get_logits_processor

        def recording(generation_config: Any, *args: Any, **kwargs: Any) -> Any:
            processors = build(generation_config, *args, **kwargs)
            self.seen = {"generation_config": generation_config, "processors": list(processors)}
            return processors

        self.model._get_logits_processor = recording

    def applied(self) -> dict[str, Any]:
        """The settings and processors of the last call, as the objects hold them."""
        config = self.seen["generation_config"]
        processors = self.seen["processors"]
        out: dict[str, Any] = {k: getattr(config, k, None) for k in GENERATION_KEYS}
        # What the warpers really apply: transformers adds one only where it changes something, so a sampling
        # call without a temperature, top-k or top-p warper samples at temperature 1 from the whole distribution
        # (top_k 0). Unset, top_k is transformers' default 50: a top-k warper, read back here.
        neutral = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": None} if config.do_sample \
            else dict.fromkeys(out)
        for name in ("temperature", "top_k", "top_p", "min_p"):
            out[name] = next((getattr(p, name) for p in processors if hasattr(p, name)), neutral[name])
        out["processors"] = [type(p).__name__ for p in processors]
        return out


def static_shape(cache: Any) -> list[int] | None:
    """(rows, kv heads, length, head dim) of a static cache's allocated keys, as the tensors hold it."""
    layers = getattr(cache, "layers", None) or []
    keys = getattr(layers[0], "keys", None) if layers else None
    return list(keys.shape) if isinstance(cache, StaticCache) and keys is not None else None


@dataclass
class BatchRun:
    texts: list[str]
    tokens_per_row: list[int]
    seconds: float
    ttft_s: float | None
    #: Decoding steps generate() ran (its loop's iterations), whatever rows ended early.
    steps: int
    #: Seconds to build the batch's logits processor (inside the pass, outside generate()).
    build_s: float
    #: What really ran: the generation settings, processors and cache generate() used.
    applied: dict[str, Any]
    #: Tokens drafted and drafted tokens accepted (None without a draft: standard decoding).
    drafted: int | None = None
    accepted: int | None = None
    stopped: int | None = None


class Generator:
    """Runs one batch of prompt rows through generate() with the cell's settings."""

    def __init__(self, model: Any, tokenizer: Any, cfg: Any, device: torch.device, cache_length: int) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.kwargs: dict[str, Any] = {
            **sampling_kwargs(cfg.sampling),
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            # The decode step is compiled here (static_compiled), never by transformers behind our back.
            "disable_compile": True,
            "return_dict_in_generate": True,
        }
        self.decoding = Decoding(cfg.decoding, model, cfg.attention, str(cfg.logit_processor.kind), self.kwargs)
        self.kwargs.update(self.decoding.kwargs())
        self.static = cfg.kv_cache.implementation == "static"
        self.cache_length = cache_length
        self.caches: dict[int, StaticCache] = {}
        self.prompt_cache = PromptCache(cfg.prompt_cache, model, self.decoding.kind)
        self.compiler = DecodeStepCompiler(model) if cfg.kv_cache.get("compile", False) else None
        self.logit_processor = str(cfg.logit_processor.kind)
        self.num_beams = int(self.kwargs.get("num_beams", 1))
        self.sdpa_backend = cfg.attention.get("sdpa_backend")
        self.clock = StepClock(device)
        self.probe = GenerateProbe(model)

    def encode(self, smiles: tuple[str, ...]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer([prompt(s) for s in smiles], return_tensors="pt", padding=True)
        return {k: v.to(self.device) for k, v in encoded.items()}

    def cache(self, rows: int) -> StaticCache:
        """The cell's static cache for `rows` rows (beams included), emptied for a new call."""
        if rows not in self.caches:
            self.caches[rows] = StaticCache(config=self.model.config, max_cache_len=self.cache_length)
        cache = self.caches[rows]
        cache.reset()
        return cache

    def run(self, batch: Batch, templates: list[Template] | None) -> BatchRun:
        """One generate() call over the batch (one row per SMILES), following `templates` when constrained."""
        inputs = self.encode(batch.smiles)
        building = time.perf_counter()
        processor = make_processor(self.logit_processor, templates, self.tokenizer, inputs["input_ids"].shape[1],
                                   rows_per_template=self.num_beams, device=self.device)
        build_s = time.perf_counter() - building
        steps: dict[str, Any] = {"max_new_tokens": batch.max_new_tokens}
        if batch.min_new_tokens is not None:
            steps["min_new_tokens"] = batch.min_new_tokens
        with torch.inference_mode(), sdpa_backend(self.sdpa_backend), self.decoding.refusals():
            if self.static:  # reset inside inference mode: the cache's tensors were made there
                steps["cache"] = self.cache(len(batch.smiles) * self.num_beams)
            self.clock.start()
            if self.prompt_cache.enabled:  # its prefill is part of the call's time and of its first token's
                steps["cache"] = self.prompt_cache.start(batch.smiles, inputs, self.encode, steps.get("cache"),
                                                         self.num_beams)
            output = self.model.generate(
                **inputs, **self.kwargs, **steps,
                logits_processor=LogitsProcessorList([processor] if processor is not None else []),
                stopping_criteria=StoppingCriteriaList([self.clock]),
            )
            seconds, ttft_s = self.clock.stop()
        drafts = self.decoding.counted()
        new = output.sequences[:, inputs["input_ids"].shape[1]:].tolist()
        counts = count_generated(new, self.tokenizer.eos_token_id)
        texts = [self.decode(row[:n]) for row, n in zip(new, counts)]
        applied = {**self.probe.applied(), "cache": type(output.cache).__name__,
                   "cache_shape": static_shape(output.cache),
                   "logit_processor": type(processor).__name__ if processor is not None else None}
        return BatchRun(texts, counts, seconds, ttft_s, self.clock.steps, build_s, applied,
                        drafts.drafted if drafts else None, drafts.accepted if drafts else None,
                        drafts.stopped if drafts else None)

    def decode(self, ids: list[int]) -> str:
        """The generated text with the tags kept (they are the format) and BOS/EOS/PAD removed."""
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        for special in {self.tokenizer.eos_token, self.tokenizer.pad_token, self.tokenizer.bos_token} - {None}:
            text = text.replace(special, "")
        return text
