"""One cell of the study: load the model, plan the work, warm every shape, time the passes, validate.

The engine calls `run_cell(cfg, cell)` in a fresh process (so peak memory is the cell's own) with the cell's
resolved config and its handle (docs/tasks.md): the CPUs it may use, a give-up hook for a hang, a place for its
per-generation detail (`results.json`) and a way to name the files its result depends on (the data file, the
checkpoint). It returns the summary's figures; the engine decides where the files go. The work is fixed before the clock starts (workload.py), warm-up covers every batch shape and
checks the first steps (passes.py), and a combination that cannot run here, or hangs, ends `unsupported` with
the library's own reason, a result of the study as in the seeds' tables.
"""
from __future__ import annotations

import os
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import logging as hf_logging

from molgen_grid.bench import attention, machine
from molgen_grid.bench.context import cell_context, device_context, parameters
from molgen_grid.bench.data import existing_file, invalid_rows_warning, load_molecules
from molgen_grid.bench.decoding import draft_directory
from molgen_grid.bench.etkdg import reference_point
from molgen_grid.bench.generate import Generator
from molgen_grid.bench.measure import noisy, peak_gpu_memory_mb, peak_rss_mb, spread
from molgen_grid.bench.model import (checkpoint_files, directory_files, hub_offline, load, resolve_device,
                                    resolve_dtype)
from molgen_grid.bench.passes import (DEFINITIONS, Pass, compiled_frames, cuda_graph_records, run_pass, timed_passes,
                                      warm_up)
from molgen_grid.bench.provenance import provenance
from molgen_grid.bench.quantization import quantize
from molgen_grid.bench.templates import resolve_workers
from molgen_grid.bench.trackers.energy import energy_meter
from molgen_grid.bench.trackers.ncu import ProfileError, ncu_executable, ncu_profile
from molgen_grid.bench.trackers.profile import profiled_pass
from molgen_grid.bench.validate import check_generation, quality, rmsd_quality
from molgen_grid.bench.watchdog import Watchdog
from molgen_grid.bench.workload import Workload, plan_workload
from molgen_grid.errors import InputError

#: The per-pass figures reported as {"median", "min", "max", "values"} over the timed repeats.
FIGURES = tuple(DEFINITIONS)


def resolve_cell_device(requested: str) -> torch.device:
    """The device a cell runs on; a cell that asked for CUDA and sees none fails, saying what it saw."""
    device = resolve_device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise RuntimeError(f"gpu.device={requested} but this process sees no CUDA device "
                           f"(CUDA_VISIBLE_DEVICES={visible!r}): run it on a GPU node or set gpu.device=auto")
    return device


def record_inputs(cfg: Any, cell: Any) -> None:
    """The files a result depends on beyond the config and the code: the data file, the checkpoint's files."""
    cell.record_inputs("data", existing_file(str(cfg.data.path)))
    cell.record_inputs("checkpoint", *checkpoint_files(cfg.model))
    if cfg.decoding.kind == "assisted":
        cell.record_inputs("draft", *directory_files([draft_directory(cfg.decoding)]))


def run_cell(cfg: Any, cell: Any) -> dict[str, Any]:
    """The cell's summary figures, quality, provenance and data description; each generation, decoded and
    checked, goes to the cell's `results.json`.

    `cell.give_up(reason, detail)` (None outside the engine) ends the cell as unsupported at once, from any
    thread: the watchdog calls it on a hang.
    """
    started = time.perf_counter()
    cpus = cell.cpus
    if int(cfg.repeats) < 1:
        raise InputError(f"repeats={cfg.repeats} times nothing: set repeats=1 or more")
    # Every cell alike: transformers turns the tokenizers' own threads off when it compiles on CUDA.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    hf_logging.disable_progress_bar()
    molecules, rows = generation_rows(cfg)
    device = resolve_cell_device(str(cfg.gpu.device))
    if device.type == "cpu":
        # The CPUs the engine allotted (Slurm's allocation), not every core of a shared node.
        torch.set_num_threads(max(1, cpus))
    workers = resolve_workers(cfg.template_building, cpus)
    data = {"source": molecules.source, "molecules": len(molecules.smiles), "invalid_rows": len(molecules.invalid),
            "reference_conformers": sum(len(v) for v in molecules.references.values()), "rows": len(rows)}
    before, graphs_before = machine.snapshot(device.type == "cuda"), cuda_graph_records()
    record_inputs(cfg, cell)
    watchdog = Watchdog(cell.give_up)
    unsupported = {"status": "unsupported", "metrics": {}, "quality": {}, "provenance": provenance(device),
                   "data": data, "context": device_context(device)}
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        try:
            if cfg.profile.kind == "ncu":
                ncu_executable(cfg.profile)  # before any work: a machine without Nsight Compute says so at once
            loaded = load_generator(cfg, device, rows)
            generator, workload = loaded.generator, loaded.workload
            data["batches"] = len(workload.batches)
            warm = warm_up(generator, workload, cfg, workers, watchdog)
            frames, graphs = compiled_frames(), cuda_graph_records()
            meter = energy_meter(f"GPU-{torch.cuda.get_device_properties(device).uuid}"
                                 if device.type == "cuda" else None)
            passes = timed_passes(generator, workload, cfg, workers, watchdog, warm.pass_estimate_s, meter)
            recompiles, rerecords = compiled_frames() - frames, cuda_graph_records() - graphs
            profiled = profile_block(cfg, generator, workload, workers, watchdog, device, cell)
        except KeyboardInterrupt:
            if watchdog.fired is None:
                raise
            return {**unsupported, "reason": watchdog.fired[0], "detail": watchdog.fired[1]}
        except (ImportError, RuntimeError, attention.Unsupported) as exc:
            reason = attention.refusal(exc, [str(w.message) for w in warned])
            if reason is None:
                raise
            return {**unsupported, "reason": reason}
    load_block, load_warnings = machine.competition(before, machine.snapshot(device.type == "cuda"))
    per_pass = [p.figures() for p in passes]
    metrics: dict[str, Any] = {name: spread([f[name] for f in per_pass]) for name in FIGURES}
    last = passes[-1]
    peak_allocated, peak_reserved = peak_gpu_memory_mb(device)
    metrics.update({
        # Tokens and steps of the last pass (greedy passes all alike; a sampling cell's differ: see the lists).
        "generated_tokens": last.generated_tokens,
        "generated_tokens_per_pass": [f["generated_tokens"] for f in per_pass],
        "decode_steps": last.decode_steps,
        "decode_steps_per_pass": [f["decode_steps"] for f in per_pass],
        "workload": workload.mode,
        "cache_length": workload.cache_length if generator.static else None,
        "recompiles": recompiles,
        # CUDA graphs recorded in warm-up, and recorded again in the timed passes (each a capture's cost).
        "cuda_graph_records": {"warmup": graphs - graphs_before, "timed": rerecords},
        "wall_s": time.perf_counter() - started,
        "load_s": loaded.load_s,
        "compile_s": warm.compile_s,
        "warmup": int(cfg.warmup),
        # The rounds warm-up took to settle (passes.py), each round's seconds, and whether it settled.
        "warmup_rounds": len(warm.round_s),
        "warmup_round_s": warm.round_s,
        "warmup_settled": warm.settled,
        "warmup_shapes": len(workload.distinct()),
        "repeats": len(passes),
        "repeat_seeds": [p.seed for p in passes],
        # Which trajectory each repeat followed: a digest of its generated texts (equal digests, equal texts).
        "texts_sha256_per_pass": [p.digest() for p in passes],
        # Each repeat's generations checked (quality below judges the last pass's in full).
        "valid_fraction": spread(valid_fractions(rows, passes)),
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mem_mb": peak_allocated,
        "peak_gpu_reserved_mb": peak_reserved,
        "energy": meter.describe(),
        "tokenizer_cache": {"enabled": last.cache.enabled, "hits": last.cache.hits, "misses": last.cache.misses},
        "torch_threads": torch.get_num_threads(),
        "load": load_block,
        "warnings": cell_warnings(cfg, metrics, len(passes), (recompiles, rerecords), device, molecules)
        + load_warnings + [w for w in [warm.warning()] if w],
    })
    quality_block, generations = judged(cfg, rows, last, molecules)
    cell.write_json("results.json", {"cell": cell.name, "generations": generations})
    return {"status": "ok", "metrics": metrics,
            "applied": {**applied(cfg, generator, last, warm, device), "quantization": loaded.quantized,
                        "decoding": generator.decoding.applied(),
                        "prompt_cache": generator.prompt_cache.applied(), "hub": loaded.hub},
            "quality": quality_block, "provenance": provenance(device), "data": data, "profile": profiled,
            "context": cell_context(device, cfg, generator.model, loaded.model_size, generator.decoding.draft,
                                    load_block),
            "definitions": {f"metrics.{name}": text for name, text in DEFINITIONS.items()}}


def generation_rows(cfg: Any) -> tuple[Any, list[str]]:
    """The cell's molecules and its prompt rows (each molecule `num_generations` times)."""
    molecules = load_molecules(str(cfg.data.path), str(cfg.data.get("column") or "smiles"), cfg.sample_size)
    return molecules, [s for s in molecules.smiles for _ in range(int(cfg.num_generations))]


@dataclass
class Loaded:
    generator: Generator
    workload: Workload
    #: What quantization applied (quantization.py), and the checkpoint's load seconds (without it).
    quantized: dict[str, Any]
    load_s: float
    #: The model's parameters as loaded, before quantization repacks its weights.
    model_size: str
    #: The Hub switch the cell's process saw (model.hub_offline()).
    hub: dict[str, Any]


def load_generator(cfg: Any, device: torch.device, rows: list[str]) -> Loaded:
    """The model (loaded, then quantized as the cell says), its work planned, and the generator that runs it."""
    dtype = resolve_dtype(str(cfg.model.dtype), device)
    attention.prepare(cfg.attention, dtype)
    hub = hub_offline()
    loading = time.perf_counter()
    model, tokenizer = load(cfg.model, cfg.attention, device, dtype)
    load_s = time.perf_counter() - loading
    model_size = parameters(model)
    quantized = quantize(model, cfg.quantization)
    workload = plan_workload(rows, int(cfg.batch_size), tokenizer, str(cfg.logit_processor.kind),
                             str(cfg.workload), int(cfg.max_new_tokens))
    return Loaded(Generator(model, tokenizer, cfg, device, workload.cache_length), workload, quantized, load_s,
                  model_size, hub)


def profile_block(cfg: Any, generator: Generator, workload: Any, workers: int, watchdog: Watchdog,
                  device: torch.device, cell: Any) -> dict[str, Any] | None:
    """`profile=torch`: one pass more, under the profiler; `profile=ncu`: a window of the first batch's steps,
    in a process of its own under Nsight Compute. Bounded as the first timed pass was; None without a profile.
    A profiler that fails or is refused costs the profile, never the timed figures: `{"kind", "error"}`."""
    if cfg.profile.kind == "none":
        return None
    try:
        if cfg.profile.kind == "ncu":
            return ncu_profile(cfg, cell.dir, watchdog)
        with watchdog.guard(float(cfg.hang.warmup_s), "profiled pass"):
            return profiled_pass(lambda: run_pass(generator, workload.batches, cfg, workers), device, cell.dir,
                                 int(cfg.profile.top_ops))
    except Exception as exc:  # the profiler's failure, whatever raised it (a hang still ends the cell)
        return {"kind": str(cfg.profile.kind), "error": str(exc) if isinstance(exc, ProfileError)
                else f"{type(exc).__name__}: {exc}"}


def cell_warnings(cfg: Any, metrics: dict[str, Any], repeats: int, recompiled: tuple[int, int],
                  device: torch.device, molecules: Any) -> list[str]:
    """What a reader of the figures must know before comparing them (`recompiled`: the timed passes' recompiles
    and CUDA-graph records)."""
    recompiles, rerecords = recompiled
    found = [w for w in (noisy(n, metrics[n]) for n in ("tokens_per_s", "step_ms")) if w]
    if repeats == 1:
        found.append("one timed repeat: no spread, and no test against another cell can call a difference real")
    if recompiles:
        found.append(f"{recompiles} torch.compile recompilations during the timed passes: their time is in the "
                     "figures (warm-up did not cover every shape)")
    if rerecords:
        found.append(f"{rerecords} CUDA graphs recorded during the timed passes: their capture time is in the figures")
    if cfg.gpu.get("executor") == "slurm" and device.type != "cuda":
        found.append(f"a GPU partition's cell ran on {device} (no CUDA in the job): not GPU figures")
    return found + [w for w in [invalid_rows_warning(molecules.source, molecules.invalid)] if w]


def applied(cfg: Any, generator: Generator, last: Pass, warm: Any, device: torch.device) -> dict[str, Any]:
    """What really ran, read back from the objects: not the options' names."""
    constrained = cfg.logit_processor.kind != "none"
    return {
        **last.applied,
        "attention": generator.model.config._attn_implementation,
        "sdpa_backend": generator.sdpa_backend,
        "sdpa_backend_ran": warm.backends or None,
        "sdpa_probe_cache": warm.probe_cache,
        "attention_environment": dict(cfg.attention.get("environment") or {}),
        "compile": None if generator.compiler is None else generator.compiler.config.to_dict(),
        "forward_calls": None if generator.compiler is None else dict(generator.compiler.calls),
        "template_workers": last.template_workers if constrained else None,
        "template_threads": last.template_threads if constrained else None,
        "tokenizer_cache_hits": last.cache.hits,
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM"),
        "device": str(device),
    }


def judged(cfg: Any, rows: list[str], last: Pass, molecules: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The quality block and each generation, decoded and checked against its prompt and references; with
    `evaluation.etkdg_reference`, RDKit's conformers of the same molecules scored the same way beside them."""
    threshold = float(cfg.evaluation.rmsd_threshold_A)
    checks = [check_generation(s, t) for s, t in zip(rows, last.texts)]
    min_rmsd, rmsd = rmsd_quality(rows, checks, molecules.references, threshold)
    generations = [{"smiles": s, "text": t, "generated_tokens": n, "valid": c.valid, "issue": c.issue,
                    "detail": c.detail, "min_rmsd_A": r}
                   for s, t, n, c, r in zip(rows, last.texts, last.tokens_per_row, checks, min_rmsd)]
    block = quality(checks, {**rmsd, "median_min_rmsd_A": median_of(min_rmsd)})
    if cfg.evaluation.get("etkdg_reference"):
        block["reference_point"] = reference_point(molecules.smiles, int(cfg.num_generations), molecules.references,
                                                   threshold, int(cfg.seed))
    return block, generations


def valid_fractions(rows: list[str], passes: list[Pass]) -> list[float | None]:
    """Each pass's fraction of valid generations; passes with the same texts (greedy repeats) checked once."""
    judged: dict[tuple[str, ...], float | None] = {}
    for texts in (tuple(p.texts) for p in passes):
        if texts not in judged:
            judged[texts] = quality([check_generation(s, t) for s, t in zip(rows, texts)])["valid_fraction"]
    return [judged[tuple(p.texts)] for p in passes]


def median_of(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None
