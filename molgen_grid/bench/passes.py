"""Timed passes over a cell's batches, and the warm-up that comes before them.

A pass is the whole constrained-generation loop the public runner timed, batch by batch: template building,
the logit processor's construction and generate(). Warm-up runs every distinct batch shape (so no compile,
recompile or cache allocation lands in a timed pass) and, before its first round, each shape's first steps
outside generate() (first_steps.py: finite scores on every row, the SDPA backend that runs). One round was not
always enough (a baseline's first timed repeat took 1.08 s beside 0.66-0.69 s for the rest), so rounds go on
until the last one's time is within `warmup_tolerance` of the one before: at least `warmup` rounds, at most
`warmup_max`, and the rounds it took are recorded. A watchdog bounds every
pass: warm-up by `hang.warmup_s`, each timed pass by `hang.factor` times what warm-up says a pass takes.

Every pass starts from a seed. Greedy and beam search follow one trajectory whatever the seed, so every pass uses
the cell's `seed`; a sampling cell's timed repeat uses a seed of its own, a hash of the cell's seed and the repeat's
index (`repeat_seed`), so its repeats are several trajectories and its acceptance and validity carry a spread.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from molgen_grid.bench.encoding import prompt
from molgen_grid.bench.etkdg import seed_of
from molgen_grid.bench.first_steps import first_steps, judge
from molgen_grid.bench.generate import BatchRun, Generator
from molgen_grid.bench.measure import reset_peak_gpu_memory
from molgen_grid.bench.templates import TokenizerCache, build_templates
from molgen_grid.bench.trackers.energy import EnergyMeter
from molgen_grid.bench.watchdog import Watchdog
from molgen_grid.bench.workload import Batch, Workload

#: What the whole pass's clock covers: run_pass starts it before the first batch's templates and stops it after
#: the last batch's output is decoded.
WHOLE_PASS = ("the whole pass: template building (tokenizer included), prompt encoding, the logit processor's "
              "construction, generate() and decoding the output")
#: Each per-pass figure (the summary's `metrics.NAME`, a spread over the timed repeats): what it counts and what its
#: clock covers. The summary carries them (`definitions`), so that a report says what its ranking figure measures.
DEFINITIONS = {
    "molecules_per_s": f"molecules (each with all its generations) per second of {WHOLE_PASS}",
    "tokens_per_s": "generated tokens per second inside generate() alone: template building, prompt encoding and "
                    "the processor's construction are outside its clock",
    "decode_tokens_per_s": "tokens after each call's first per second of generate() after its first token",
    "ttft_s": "seconds from a generate() call's start to its first token (prefill and the first step), per call",
    "step_ms": "milliseconds per decoding step after the first, inside generate()",
    "chars_per_s": f"the public smoke runner's figure: characters of prompt and output per second of {WHOLE_PASS}",
    "generate_s": "seconds inside generate() over the pass",
    "template_s": "seconds building the pass's templates, the tokenizer's share included",
    "tokenize_s": "seconds in the tokenizer while building the pass's templates",
    "processor_build_s": "seconds constructing the logit processor, over the pass",
    "pass_s": f"seconds of {WHOLE_PASS}",
    "joules": "the device's energy counter over the whole pass",
    "joules_per_token": "joules of the whole pass per generated token",
    "latency_s": "seconds per generate() call (one request: one batch)",
    "target_forwards_per_token": "the model's decoding steps (forwards) per generated token",
    "draft_tokens": "tokens drafted over the pass",
    "accepted_tokens": "drafted tokens the model accepted over the pass",
    "draft_tokens_stopped": "tokens the draft could have drafted but its confidence threshold stopped, over the pass",
    "acceptance_ratio": "accepted tokens per drafted token",
}


@dataclass
class Pass:
    """One pass over some batches: the figures of one repeat (or one warm-up round), and its generations."""

    cache: TokenizerCache
    #: The seed torch's generators were set to before the pass.
    seed: int = 0
    rows: int = 0
    #: The distinct molecules (SMILES) of the pass's rows.
    molecules: set[str] = field(default_factory=set)
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
    #: The pass's joules from the device's energy counter (None where there is none: trackers/energy.py).
    joules: float | None = None
    #: Tokens drafted, drafted tokens the model accepted and draft tokens the confidence threshold stopped (None
    #: without a draft: decoding.py).
    drafted: int | None = None
    accepted: int | None = None
    stopped: int | None = None

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
            "molecules_per_s": len(self.molecules) / self.pass_s if self.pass_s > 0 else None,
            "generated_tokens": self.generated_tokens,
            "decode_steps": self.decode_steps,
            "tokens_per_s": self.generated_tokens / self.generate_s if self.generate_s > 0 else None,
            "decode_tokens_per_s": (self.generated_tokens - self.rows) / decode_s if decode_s else None,
            "ttft_s": None if ttft is None else ttft / len(ttfts),
            "step_ms": 1000 * decode_s / later_steps if decode_s is not None and later_steps else None,
            # The public smoke runner's figure: every character of prompt and output over the whole loop.
            "chars_per_s": self.chars / self.pass_s if self.pass_s > 0 else None,
            "generate_s": self.generate_s,
            "template_s": self.template_s,
            "tokenize_s": self.cache.seconds,
            "processor_build_s": self.build_s,
            "pass_s": self.pass_s,
            "joules": self.joules,
            "joules_per_token": self.joules / self.generated_tokens if self.joules is not None
            and self.generated_tokens else None,
            # A request is one generate() call (one batch; one molecule at batch 1).
            "latency_s": self.generate_s / len(self.calls) if self.calls else None,
            # Each decoding step is one forward of the model: one per token at batch 1 without a draft, fewer
            # when drafts are accepted.
            "target_forwards_per_token": self.decode_steps / self.generated_tokens if self.generated_tokens
            else None,
            "draft_tokens": self.drafted,
            "accepted_tokens": self.accepted,
            "draft_tokens_stopped": self.stopped,
            "acceptance_ratio": self.accepted / self.drafted if self.drafted else None,
        }

    def digest(self) -> str:
        """The first 16 hex digits of the SHA-256 of the pass's generated texts, in row order."""
        return hashlib.sha256("\0".join(self.texts).encode()).hexdigest()[:16]

    def add(self, batch: Batch, run: BatchRun, template_s: float) -> None:
        self.rows += len(batch.smiles)
        self.molecules.update(batch.smiles)
        self.template_s += template_s
        self.build_s += run.build_s
        self.generate_s += run.seconds
        self.calls.append((run.seconds, run.ttft_s, run.steps))
        self.generated_tokens += sum(run.tokens_per_row)
        self.chars += sum(len(prompt(s)) + len(t) for s, t in zip(batch.smiles, run.texts))
        self.texts += run.texts
        self.tokens_per_row += run.tokens_per_row
        self.applied = run.applied
        if run.drafted is not None:
            self.drafted = (self.drafted or 0) + run.drafted
            self.accepted = (self.accepted or 0) + run.accepted
            self.stopped = (self.stopped or 0) + (run.stopped or 0)


def repeat_seed(generator: Generator, cfg: Any, index: int) -> int:
    """The seed of timed repeat `index`: the cell's own where generate() does not sample, else one per repeat."""
    samples = generator.kwargs.get("do_sample", generator.model.generation_config.do_sample)
    return seed_of(int(cfg.seed), "repeat", index) if samples else int(cfg.seed)


def run_pass(generator: Generator, batches: list[Batch] | tuple[Batch, ...], cfg: Any, workers: int,
             seed: int | None = None) -> Pass:
    """Template building, the processor and generation for every batch, timed as the public runner's loop was;
    from `seed` (the cell's `seed` when None)."""
    seed = int(cfg.seed) if seed is None else seed
    torch.manual_seed(seed)
    generator.decoding.reset()
    generator.prompt_cache.reset()
    constrained = cfg.logit_processor.kind != "none"
    result = Pass(cache=TokenizerCache(bool(cfg.tokenizer_cache.enabled)), seed=seed)
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


def cuda_graph_records() -> int:
    """CUDA graphs recorded in this process so far: torch's cudagraph trees time each recording (a re-record
    included) as "CUDAGraphNode.record" in dynamo's compilation metrics. Zero where none is captured (a CPU)."""
    from torch._dynamo.utils import compilation_time_metrics

    return len(compilation_time_metrics.get("CUDAGraphNode.record", []))


@dataclass
class WarmUp:
    #: The compile's seconds (each shape's first call minus a warm call of it), None when nothing compiles.
    compile_s: float | None = None
    #: What a timed pass should take, from warm-up's calls (None without warm-up).
    pass_estimate_s: float | None = None
    #: The SDPA backend torch picked at the first prefill and decode step.
    backends: dict[str, str] = field(default_factory=dict)
    #: Each warm-up round's seconds (its pass_s), in order: how many rounds it took to settle.
    round_s: list[float] = field(default_factory=list)
    #: Whether the last round was within the tolerance of the one before (None: no warm-up, or too few rounds).
    settled: bool | None = None
    #: The cache class those first steps ran on (the cell's own: static or dynamic).
    probe_cache: str | None = None

    def warning(self) -> str | None:
        """A warning when warm-up ended at its maximum with its last two rounds still apart."""
        if self.settled is not False:
            return None
        return (f"warm-up did not settle in {len(self.round_s)} rounds (the last two took {self.round_s[-2]:.3g} s "
                f"and {self.round_s[-1]:.3g} s): the first timed repeats may still be warming up")


def settled(round_s: list[float], tolerance: float) -> bool | None:
    """Whether the last round's seconds are within `tolerance` (relative) of the round before; None before two."""
    if len(round_s) < 2:
        return None
    return abs(round_s[-1] - round_s[-2]) <= tolerance * round_s[-2]


def check_first_steps(generator: Generator, shapes: list[Batch], cfg: Any, result: WarmUp) -> None:
    """Each shape's first steps, on the cell's own cache: finite scores on every row (else the cell stops), and
    the backend that runs and the cache it ran on (into `result`)."""
    forward = generator.compiler.eager if generator.compiler is not None else generator.model.forward
    for batch in shapes:
        rows = len(batch.smiles)
        cache = (lambda: generator.cache(rows)) if generator.static else None
        steps = first_steps(forward, generator.encode(batch.smiles), generator.sdpa_backend, cache)
        judge(steps, rows, str(cfg.numerics),
              f"attention {generator.model.config._attn_implementation}, {generator.model.dtype}")
        result.backends = result.backends or steps.backends
        result.probe_cache = result.probe_cache or steps.cache


def warm_up(generator: Generator, workload: Workload, cfg: Any, workers: int, watchdog: Watchdog) -> WarmUp:
    """Check every distinct batch shape's first steps, then run them in rounds until a round's time settles
    within `cfg.warmup_tolerance` of the one before (at least `cfg.warmup` rounds, at most `cfg.warmup_max`);
    with a compiled decode step, a warm call of each shape beside its first gives the compile's own seconds."""
    shapes, result = workload.distinct(), WarmUp()
    least, most = int(cfg.warmup), max(int(cfg.warmup), int(cfg.warmup_max))
    with watchdog.guard(float(cfg.hang.warmup_s), "warm-up"):
        check_first_steps(generator, shapes, cfg, result)  # cheap, and never skipped
        if least < 1:
            return result
        calls = []
        while len(calls) < least or (len(calls) < most and not result.settled):
            warm = run_pass(generator, shapes, cfg, workers)
            calls.append(warm.calls)
            result.round_s.append(warm.pass_s)
            result.settled = settled(result.round_s, float(cfg.warmup_tolerance))
        if generator.compiler is not None:
            again = calls[-1] if len(calls) > 1 else run_pass(generator, shapes, cfg, workers).calls
            result.compile_s = sum(max(0.0, first - warm) for (first, _, _), (warm, _, _) in zip(calls[0], again))
    warm_calls = [seconds for seconds, _, _ in calls[-1]]
    result.pass_estimate_s = sum(warm_calls) / len(warm_calls) * len(workload.batches)
    return result


def timed_passes(generator: Generator, workload: Workload, cfg: Any, workers: int, watchdog: Watchdog,
                 estimate_s: float | None, meter: EnergyMeter) -> list[Pass]:
    """`cfg.repeats` passes over every batch, each bounded by `hang.factor` times the expected pass (at least
    `hang.min_s`); without warm-up the first pass is bounded by `hang.warmup_s` and sets the estimate. The meter
    reads the energy counter around each pass (generate() has synchronised the device at its end); the GPU's
    peak memory starts over here. Each pass starts from its `repeat_seed`."""
    reset_peak_gpu_memory(generator.device)
    passes: list[Pass] = []
    for index in range(int(cfg.repeats)):
        budget = float(cfg.hang.warmup_s) if estimate_s is None else max(float(cfg.hang.min_s),
                                                                        float(cfg.hang.factor) * estimate_s)
        with watchdog.guard(budget, f"timed pass {index + 1} of {int(cfg.repeats)}"):
            meter.start()
            passes.append(run_pass(generator, workload.batches, cfg, workers, repeat_seed(generator, cfg, index)))
            passes[-1].joules = meter.stop()
        estimate_s = estimate_s if estimate_s is not None else passes[-1].pass_s
    return passes
