"""One cell of the study: load the model, plan the work, warm every shape, time the passes, validate.

The engine calls `run_cell` in a fresh process (so peak memory is the cell's own) with the cell's resolved
config; it returns the summary's figures and per-generation detail and writes nothing (the engine owns the
results tree). The work is fixed before the clock starts (workload.py), warm-up runs every distinct batch
shape, so no compile, recompile or cache allocation lands in a timed pass, and every pass counts the whole
constrained-generation loop: template building, the processor's construction and generate().
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.utils import logging as hf_logging

from molgen_grid.bench import machine
from molgen_grid.bench.data import existing_file, invalid_rows_warning, load_molecules
from molgen_grid.bench.encoding import prompt
from molgen_grid.bench.generate import BatchRun, Generator
from molgen_grid.bench.measure import noisy, peak_gpu_memory_mb, peak_rss_mb, spread
from molgen_grid.bench.model import checkpoint_files, load, resolve_device, resolve_dtype
from molgen_grid.bench.provenance import provenance
from molgen_grid.bench.templates import TokenizerCache, build_templates, resolve_workers
from molgen_grid.bench.validate import check_generation, quality, rmsd_quality
from molgen_grid.bench.workload import Batch, Workload, plan_workload
from molgen_grid.errors import InputError

#: What torch says when a forced SDPA backend has no kernel for this device, dtype or shape (CUDA, then CPU).
NO_KERNEL = ("No available kernel", "No viable backend for scaled_dot_product_attention")
#: The per-pass figures reported as {"median", "min", "max", "values"} over the timed repeats.
FIGURES = ("tokens_per_s", "decode_tokens_per_s", "ttft_s", "step_ms", "chars_per_s", "template_s", "tokenize_s",
           "processor_build_s", "pass_s")


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
    """One pass over some batches: the figures of one repeat (or one warm-up round), and its generations."""

    cache: TokenizerCache
    rows: int = 0
    generated_tokens: int = 0
    generate_s: float = 0.0
    #: Per batch: the generate() call's seconds, time to first token and decoding steps.
    calls: list[tuple[float, float | None, int]] = field(default_factory=list)
    template_s: float = 0.0
    build_s: float = 0.0
    chars: int = 0
    pass_s: float = 0.0
    texts: list[str] = field(default_factory=list)
    tokens_per_row: list[int] = field(default_factory=list)
    applied: dict[str, Any] = field(default_factory=dict)
    template_workers: int = 1
    template_threads: int = 0

    @property
    def decode_steps(self) -> int:
        return sum(steps for _, _, steps in self.calls)

    def figures(self) -> dict[str, float | None]:
        ttfts = [ttft for _, ttft, _ in self.calls]
        ttft = None if not ttfts or None in ttfts else sum(ttfts)
        decode_s = None if ttft is None else self.generate_s - ttft
        # Every step after each call's first token: prefill apart, rows that ended early still occupy the batch.
        later_steps = sum(steps - 1 for _, _, steps in self.calls)
        return {
            "generated_tokens": self.generated_tokens,
            "decode_steps": self.decode_steps,
            "tokens_per_s": self.generated_tokens / self.generate_s if self.generate_s > 0 else None,
            "decode_tokens_per_s": (self.generated_tokens - self.rows) / decode_s if decode_s else None,
            "ttft_s": None if ttft is None else ttft / len(ttfts),
            "step_ms": 1000 * decode_s / later_steps if decode_s is not None and later_steps else None,
            # The public smoke runner's figure: every character of prompt and output over the whole loop.
            "chars_per_s": self.chars / self.pass_s if self.pass_s > 0 else None,
            "template_s": self.template_s,
            "tokenize_s": self.cache.seconds,
            "processor_build_s": self.build_s,
            "pass_s": self.pass_s,
        }

    def add(self, batch: Batch, run: BatchRun, template_s: float) -> None:
        self.rows += len(batch.smiles)
        self.template_s += template_s
        self.build_s += run.build_s
        self.generate_s += run.seconds
        self.calls.append((run.seconds, run.ttft_s, run.steps))
        self.generated_tokens += sum(run.tokens_per_row)
        self.chars += sum(len(prompt(s)) + len(t) for s, t in zip(batch.smiles, run.texts))
        self.texts += run.texts
        self.tokens_per_row += run.tokens_per_row
        self.applied = run.applied


def run_pass(generator: Generator, batches: list[Batch] | tuple[Batch, ...], cfg: Any, workers: int) -> Pass:
    """Template building, the processor and generation for every batch, timed as the public runner's loop was."""
    torch.manual_seed(int(cfg.seed))
    constrained = cfg.logit_processor.kind != "none"
    result = Pass(cache=TokenizerCache(bool(cfg.tokenizer_cache.enabled)))
    started = time.perf_counter()
    for batch in batches:
        built = build_templates(list(batch.smiles), generator.tokenizer, result.cache, workers) if constrained \
            else None
        if built is not None:
            result.template_workers, result.template_threads = built.workers, max(result.template_threads,
                                                                                   built.threads)
        result.add(batch, generator.run(batch, built.templates if built else None), built.seconds if built else 0.0)
    result.pass_s = time.perf_counter() - started
    return result


def compiled_frames() -> int:
    """Frames torch.compile has compiled in this process so far (a recompile is one more)."""
    from torch._dynamo.utils import counters

    return int(counters["frames"]["total"])


def warm_up(generator: Generator, workload: Workload, cfg: Any, workers: int) -> float | None:
    """Run every distinct batch shape `cfg.warmup` times; with a compiled decode step, return the compile's
    seconds: each shape's first call minus a second, warm call of the same shape (None when nothing compiles)."""
    shapes = workload.distinct()
    firsts: list[float] = []
    for round_ in range(int(cfg.warmup)):
        calls = run_pass(generator, shapes, cfg, workers).calls
        if round_ == 0:
            firsts = [seconds for seconds, _, _ in calls]
    if generator.compiler is None or not firsts:
        return None
    again = run_pass(generator, shapes, cfg, workers).calls
    return sum(max(0.0, first - seconds) for first, (seconds, _, _) in zip(firsts, again))


def resolve_cell_device(requested: str) -> torch.device:
    """The device a cell runs on; a cell that asked for CUDA and sees none fails, saying what it saw."""
    device = resolve_device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise RuntimeError(f"gpu.device={requested} but this process sees no CUDA device "
                           f"(CUDA_VISIBLE_DEVICES={visible!r}): run it on a GPU node or set gpu.device=auto")
    return device


def run_cell(cfg: Any, *, cpus: int) -> dict[str, Any]:
    """The cell's summary figures, quality, provenance, data description and per-generation detail."""
    started = time.perf_counter()
    if int(cfg.repeats) < 1:
        raise InputError(f"repeats={cfg.repeats} times nothing: set repeats=1 or more")
    hf_logging.disable_progress_bar()
    molecules = load_molecules(str(cfg.data.path), str(cfg.data.get("column") or "smiles"), cfg.sample_size)
    device = resolve_cell_device(str(cfg.gpu.device))
    if device.type == "cpu":
        # The CPUs the engine allotted (Slurm's allocation), not every core of a shared node.
        torch.set_num_threads(max(1, cpus))
    rows = [s for s in molecules.smiles for _ in range(int(cfg.num_generations))]
    workers = resolve_workers(cfg.template_building, cpus)
    data = {"source": molecules.source, "molecules": len(molecules.smiles), "invalid_rows": len(molecules.invalid),
            "reference_conformers": sum(len(v) for v in molecules.references.values()), "rows": len(rows)}
    before = machine.snapshot(device.type == "cuda")
    try:
        loading = time.perf_counter()
        model, tokenizer = load(cfg.model, cfg.attention, device, resolve_dtype(str(cfg.model.dtype), device))
        load_s = time.perf_counter() - loading
        workload = plan_workload(rows, int(cfg.batch_size), tokenizer, str(cfg.logit_processor.kind),
                                 str(cfg.workload), int(cfg.max_new_tokens))
        data["batches"] = len(workload.batches)
        generator = Generator(model, tokenizer, cfg, device, workload.cache_length)
        compile_s = warm_up(generator, workload, cfg, workers)
        frames = compiled_frames()
        passes = [run_pass(generator, workload.batches, cfg, workers) for _ in range(int(cfg.repeats))]
        recompiles = compiled_frames() - frames
    except (ImportError, RuntimeError) as exc:
        reason = unsupported_reason(exc)
        if reason is None:
            raise
        return {"status": "unsupported", "reason": reason, "metrics": {}, "quality": {},
                "provenance": provenance(device), "data": data, "generations": [], "inputs": inputs(cfg)}
    load_block, load_warnings = machine.competition(before, machine.snapshot(device.type == "cuda"))
    per_pass = [p.figures() for p in passes]
    metrics: dict[str, Any] = {name: spread([f[name] for f in per_pass]) for name in FIGURES}
    last = passes[-1]
    peak_allocated, peak_reserved = peak_gpu_memory_mb(device)
    warnings = [w for w in (noisy(n, metrics[n]) for n in ("tokens_per_s", "step_ms")) if w]
    if len(passes) == 1:
        warnings.append("one timed repeat: no spread, and no test against another cell can call a difference real")
    if recompiles:
        warnings.append(f"{recompiles} torch.compile recompilations during the timed passes: their time is in "
                        "the figures (warm-up did not cover every shape)")
    if cfg.gpu.get("executor") == "slurm" and device.type != "cuda":
        warnings.append(f"a GPU partition's cell ran on {device} (no CUDA in the job): not GPU figures")
    warnings += [w for w in [invalid_rows_warning(molecules.source, molecules.invalid)] if w] + load_warnings
    metrics.update({
        # Tokens and steps of one pass (every pass generates the same rows from the same seed).
        "generated_tokens": last.generated_tokens,
        "generated_tokens_per_pass": [f["generated_tokens"] for f in per_pass],
        "decode_steps": last.decode_steps,
        "decode_steps_per_pass": [f["decode_steps"] for f in per_pass],
        "workload": workload.mode,
        "cache_length": workload.cache_length if generator.static else None,
        "recompiles": recompiles,
        "wall_s": time.perf_counter() - started,
        "load_s": load_s,
        "compile_s": compile_s,
        "warmup": int(cfg.warmup),
        "warmup_shapes": len(workload.distinct()),
        "repeats": len(passes),
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mem_mb": peak_allocated,
        "peak_gpu_reserved_mb": peak_reserved,
        "tokenizer_cache": {"enabled": last.cache.enabled, "hits": last.cache.hits, "misses": last.cache.misses},
        "torch_threads": torch.get_num_threads(),
        "load": load_block,
        "warnings": warnings,
    })
    applied = {
        **last.applied,
        "attention": model.config._attn_implementation,
        "sdpa_backend": generator.sdpa_backend,
        "compile": None if generator.compiler is None else generator.compiler.config.to_dict(),
        "forward_calls": None if generator.compiler is None else dict(generator.compiler.calls),
        "template_workers": last.template_workers if cfg.logit_processor.kind != "none" else None,
        "template_threads": last.template_threads if cfg.logit_processor.kind != "none" else None,
        "tokenizer_cache_hits": last.cache.hits,
        "device": str(device),
    }
    checks = [check_generation(s, t) for s, t in zip(rows, last.texts)]
    min_rmsd, rmsd = rmsd_quality(rows, checks, molecules.references, float(cfg.evaluation.rmsd_threshold_A))
    generations = [{"smiles": s, "text": t, "generated_tokens": n, "valid": c.valid, "issue": c.issue,
                    "detail": c.detail, "min_rmsd_A": r}
                   for s, t, n, c, r in zip(rows, last.texts, last.tokens_per_row, checks, min_rmsd)]
    return {"status": "ok", "reason": None, "metrics": metrics, "applied": applied,
            "quality": quality(checks, rmsd), "provenance": provenance(device), "data": data,
            "generations": generations, "inputs": inputs(cfg)}


def inputs(cfg: Any) -> dict[str, list[str]]:
    """The files a result depends on beyond the config and the code: the data file, the checkpoint's files."""
    return {"data": [str(existing_file(str(cfg.data.path)))], "checkpoint": checkpoint_files(cfg.model)}
