"""One cell of the study: load the model, build templates, generate, time, validate; return the figures.

The engine calls `run_cell` in a fresh process (so peak memory is the cell's own) with the cell's resolved
config; it returns the summary's figures and per-generation detail and writes nothing but the embedded model's
cache (the engine owns the results tree).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.utils import logging as hf_logging

from molgen_grid.bench.data import load_molecules
from molgen_grid.bench.generate import Generator, prompt
from molgen_grid.bench.measure import noisy, peak_gpu_mem_mb, peak_rss_mb, spread
from molgen_grid.bench.model import compile_decode, load, resolve_device, resolve_dtype
from molgen_grid.bench.provenance import provenance
from molgen_grid.bench.templates import TokenizerCache, build_templates, resolve_workers
from molgen_grid.bench.validate import check_generation, quality, rmsd_quality
from molgen_grid.errors import InputError

#: What torch says when a forced SDPA backend has no kernel for this device, dtype or shape (CUDA, then CPU).
NO_KERNEL = ("No available kernel", "No viable backend for scaled_dot_product_attention")
#: The per-pass figures reported as {"median", "min", "max", "values"} over the timed repeats.
FIGURES = ("tokens_per_s", "decode_tokens_per_s", "ttft_s", "chars_per_s", "template_s", "tokenize_s", "pass_s")


def unsupported_reason(exc: BaseException) -> str | None:
    """The library's message when `exc` means "this combination cannot run here" (a result, not a crash).

    Only a missing optional package (flash-attn) and a forced SDPA backend with no kernel for this device or
    dtype count; every other error is a failure and propagates.
    """
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else type(exc).__name__
    if isinstance(exc, ImportError) or (isinstance(exc, RuntimeError) and any(m in str(exc) for m in NO_KERNEL)):
        return message
    return None


@dataclass
class Pass:
    """One pass over the batches: the figures of one repeat, and its generations."""

    rows: int = 0
    generated_tokens: int = 0
    generate_s: float = 0.0
    ttft_s: list[float | None] = field(default_factory=list)
    template_s: float = 0.0
    chars: int = 0
    pass_s: float = 0.0
    cache: TokenizerCache | None = None
    texts: list[str] = field(default_factory=list)
    tokens_per_row: list[int] = field(default_factory=list)

    def figures(self) -> dict[str, float | None]:
        ttft = None if not self.ttft_s or None in self.ttft_s else sum(self.ttft_s)
        decode_s = None if ttft is None else self.generate_s - ttft
        return {
            "generated_tokens": self.generated_tokens,
            "tokens_per_s": self.generated_tokens / self.generate_s if self.generate_s > 0 else None,
            "decode_tokens_per_s": (self.generated_tokens - self.rows) / decode_s if decode_s else None,
            "ttft_s": None if ttft is None else ttft / len(self.ttft_s),
            # The public smoke runner's figure: every character of prompt and output over the whole loop.
            "chars_per_s": self.chars / self.pass_s if self.pass_s > 0 else None,
            "template_s": self.template_s,
            "tokenize_s": self.cache.seconds if self.cache else 0.0,
            "pass_s": self.pass_s,
        }


def run_pass(generator: Generator, batches: list[list[str]], cfg: Any, workers: int) -> Pass:
    """Template building and generation for every batch, timed as the public runner's loop was."""
    torch.manual_seed(int(cfg.seed))
    constrained = cfg.logit_processor.kind != "none"
    result = Pass(cache=TokenizerCache(bool(cfg.tokenizer_cache.enabled)))
    started = time.perf_counter()
    for batch in batches:
        built = build_templates(batch, generator.tokenizer, result.cache, workers) if constrained else None
        run = generator.run(batch, built.templates if built else None)
        result.rows += len(batch)
        result.template_s += built.seconds if built else 0.0
        result.generate_s += run.seconds
        result.ttft_s.append(run.ttft_s)
        result.generated_tokens += sum(run.tokens_per_row)
        result.chars += sum(len(prompt(s)) + len(t) for s, t in zip(batch, run.texts))
        result.texts += run.texts
        result.tokens_per_row += run.tokens_per_row
    result.pass_s = time.perf_counter() - started
    return result


def run_cell(cfg: Any, *, cpus: int) -> dict[str, Any]:
    """The cell's summary figures, quality, provenance, data description and per-generation detail."""
    started = time.perf_counter()
    if int(cfg.repeats) < 1:
        raise InputError(f"repeats={cfg.repeats} times nothing: set repeats=1 or more")
    hf_logging.disable_progress_bar()
    molecules = load_molecules(str(cfg.data.path), str(cfg.data.get("column") or "smiles"), cfg.sample_size)
    device = resolve_device(str(cfg.gpu.device))
    if device.type == "cpu":
        # The CPUs the engine allotted (Slurm's allocation), not every core of a shared node.
        torch.set_num_threads(max(1, cpus))
    rows = [s for s in molecules.smiles for _ in range(int(cfg.num_generations))]
    batches = [rows[i:i + int(cfg.batch_size)] for i in range(0, len(rows), int(cfg.batch_size))]
    workers = resolve_workers(cfg.template_building, cpus)
    data = {"source": molecules.source, "molecules": len(molecules.smiles), "invalid_rows": molecules.invalid_rows,
            "reference_conformers": sum(len(v) for v in molecules.references.values()),
            "rows": len(rows), "batches": len(batches)}
    try:
        loading = time.perf_counter()
        model, tokenizer = load(cfg.model, cfg.attention, device, resolve_dtype(str(cfg.model.dtype), device))
        load_s = time.perf_counter() - loading
        generator = Generator(model, tokenizer, cfg, device)
        compiled = bool(cfg.kv_cache.get("compile", False))
        compile_s = None
        if compiled:
            compile_decode(model, device)
            # The first pass compiles (minutes on a CPU): never inside a timed repeat, and reported apart.
            compile_s = run_pass(generator, batches[:1], cfg, workers).pass_s
        for _ in range(int(cfg.warmup)):
            run_pass(generator, batches[:1], cfg, workers)
        passes = [run_pass(generator, batches, cfg, workers) for _ in range(int(cfg.repeats))]
    except (ImportError, RuntimeError) as exc:
        reason = unsupported_reason(exc)
        if reason is None:
            raise
        return {"status": "unsupported", "reason": reason, "metrics": {}, "quality": {},
                "provenance": provenance(device), "data": data, "generations": []}
    per_pass = [p.figures() for p in passes]
    metrics: dict[str, Any] = {name: spread([f[name] for f in per_pass]) for name in FIGURES}
    last = passes[-1]
    metrics.update({
        # Tokens of one pass (every pass generates the same rows from the same seed).
        "generated_tokens": last.generated_tokens,
        "generated_tokens_per_pass": [f["generated_tokens"] for f in per_pass],
        "wall_s": time.perf_counter() - started,
        "load_s": load_s,
        "compile_s": compile_s,
        "warmup": int(cfg.warmup),
        "repeats": len(passes),
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mem_mb": peak_gpu_mem_mb(device),
        "tokenizer_cache": {"enabled": last.cache.enabled, "hits": last.cache.hits, "misses": last.cache.misses},
        "template_workers": workers,
        "torch_threads": torch.get_num_threads(),
        "warnings": [w for w in (noisy(n, metrics[n]) for n in ("tokens_per_s", "decode_tokens_per_s")) if w],
    })
    if cfg.gpu.get("executor") == "slurm" and device.type != "cuda":
        metrics["warnings"].append(f"a GPU partition's cell ran on {device} (no CUDA in the job): not GPU figures")
    checks = [check_generation(s, t) for s, t in zip(rows, last.texts)]
    min_rmsd, rmsd = rmsd_quality(rows, checks, molecules.references)
    generations = [{"smiles": s, "text": t, "generated_tokens": n, "valid": c.valid, "issue": c.issue,
                    "detail": c.detail, "min_rmsd_A": r}
                   for s, t, n, c, r in zip(rows, last.texts, last.tokens_per_row, checks, min_rmsd)]
    return {"status": "ok", "reason": None, "metrics": metrics, "quality": quality(checks, rmsd),
            "provenance": provenance(device), "data": data, "generations": generations}
