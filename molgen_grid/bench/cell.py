"""One cell of the study: load the model, build templates, generate, time, validate; return the figures.

Called by the engine in a fresh process with the cell's resolved config; it returns the summary's figures and
per-generation detail, and writes nothing (the engine owns the results tree).
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from molgen_grid.bench.data import load_molecules
from molgen_grid.bench.generate import Generator, prompt
from molgen_grid.bench.measure import noisy, peak_gpu_mem_mb, peak_rss_mb, spread
from molgen_grid.bench.model import load, resolve_device
from molgen_grid.bench.provenance import provenance
from molgen_grid.bench.templates import TokenizerCache, build_templates
from molgen_grid.bench.validate import check_generation, quality

#: Messages of errors that mean "this combination cannot run here", a result of the study, not a crash.
UNSUPPORTED_MESSAGES = ("No available kernel", "flash_attn", "FlashAttention", "not supported", "not available")


def unsupported_reason(exc: BaseException) -> str | None:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, ImportError) or any(m in str(exc) for m in UNSUPPORTED_MESSAGES):
        return f"{type(exc).__name__}: {message}"
    return None


def _batches(rows: list[str], size: int) -> list[list[str]]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def _workers(template_building: Any, cpus: int) -> int:
    if not template_building.parallel:
        return 1
    return cpus if template_building.workers == "auto" else int(template_building.workers)


def run_cell(cfg: Any, *, cpus: int) -> dict:
    hf_logging.disable_progress_bar()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    molecules = load_molecules(str(cfg.data.path), str(cfg.data.column), cfg.sample_size)
    device = resolve_device(str(cfg.gpu.device))
    rows = [s for s in molecules.smiles for _ in range(int(cfg.num_generations))]
    batches = _batches(rows, int(cfg.batch_size))
    workers = _workers(cfg.template_building, cpus)
    constrained = cfg.logit_processor.kind != "none"
    info = {"data": {"source": molecules.source, "molecules": len(molecules.smiles),
                     "invalid_rows": molecules.invalid_rows, "rows": len(rows), "batches": len(batches)}}

    def templates_for(batch: list[str], cache: TokenizerCache):
        return build_templates(batch, tokenizer, cache, workers) if constrained else None

    try:
        model, tokenizer = load(cfg.model, str(cfg.attention.implementation), device)
        generator = Generator(model, tokenizer, cfg, device)
        for _ in range(int(cfg.warmup)):
            built = templates_for(batches[0], TokenizerCache(bool(cfg.tokenizer_cache.enabled)))
            generator.run(batches[0], built.templates if built else None)
    except (ImportError, RuntimeError, ValueError) as exc:
        reason = unsupported_reason(exc)
        if reason is None:
            raise
        return {"status": "unsupported", "reason": reason, "metrics": {}, "quality": {},
                "provenance": provenance(device), **info}

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    repeats: list[dict] = []
    for _ in range(int(cfg.repeats)):
        cache = TokenizerCache(bool(cfg.tokenizer_cache.enabled))
        tokens = rows_done = 0
        template_s = generate_s = ttft_sum = 0.0
        chars = 0
        texts: list[str] = []
        for batch in batches:
            built = templates_for(batch, cache)
            template_s += built.seconds if built else 0.0
            templates = built.templates if built else None
            ttft_sum += generator.run(batch, templates, max_new_tokens=1).seconds
            run = generator.run(batch, templates)
            generate_s += run.seconds
            tokens += sum(run.tokens_per_row)
            rows_done += len(batch)
            texts += run.texts
            chars += sum(len(prompt(s)) + len(t) for s, t in zip(batch, run.texts))
        decode_s = generate_s - ttft_sum
        repeats.append({
            "generated_tokens": tokens, "generate_s": generate_s, "template_s": template_s,
            "tokens_per_s": tokens / generate_s if generate_s > 0 else None,
            "decode_tokens_per_s": (tokens - rows_done) / decode_s if decode_s > 0 else None,
            "ttft_s": ttft_sum / len(batches),
            "chars_per_s": chars / (generate_s + template_s),
            "cache": {"hits": cache.hits, "misses": cache.misses}, "texts": texts,
        })

    metrics = {name: spread([r[name] for r in repeats])
               for name in ("tokens_per_s", "decode_tokens_per_s", "ttft_s", "chars_per_s", "template_s")}
    last = repeats[-1]
    checks = [check_generation(s, t) for s, t in zip(rows, last["texts"])]
    warnings = [w for w in (noisy(n, metrics[n]) for n in ("tokens_per_s", "decode_tokens_per_s")) if w]
    metrics.update({
        "generated_tokens": last["generated_tokens"],
        "wall_s": sum(r["generate_s"] + r["template_s"] for r in repeats),
        "repeats": len(repeats),
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mem_mb": peak_gpu_mem_mb(device),
        "tokenizer_cache": last["cache"],
        "template_workers": workers,
        "warnings": warnings,
    })
    generations = [{"smiles": s, "text": t, "valid": c.valid, "issue": c.issue, "detail": c.detail}
                   for s, t, c in zip(rows, last["texts"], checks)]
    return {"status": "ok", "reason": None, "metrics": metrics, "quality": quality(checks),
            "provenance": provenance(device), **info, "generations": generations}
