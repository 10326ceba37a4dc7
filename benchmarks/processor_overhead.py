"""What a logit processor costs per decoding step, measured at equal work beside the unconstrained baseline.

One batch of the default molecules (cdk2) runs through generate() with each processor kind and with none, on
the embedded model, in one process, interleaved (none, python, tensor, grammar, then again) so that the
machine's drift hits every kind alike, all at the same decode steps: the unconstrained batch runs exactly its
constrained twin's steps (`workload=matched`), the template processors end there too, and the grammar (whose
numbers vary in length) is stopped there if its rows have not ended. Prints each kind's median milliseconds per decode step over the rounds (prefill apart), its spread, its
steps, and its ratio to `none`.

    .venv/bin/python benchmarks/processor_overhead.py [--batch 16] [--rounds 7] [--kinds none,python,tensor,grammar]
"""
from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from molgen_grid.bench.data import load_molecules
from molgen_grid.bench.generate import Generator
from molgen_grid.bench.model import load
from molgen_grid.bench.templates import TokenizerCache, build_templates
from molgen_grid.bench.workload import Batch, plan_workload

CONF = Path(__file__).resolve().parents[1] / "conf"


def step_ms(generator: Generator, kind: str, batch: Batch, templates: list) -> tuple[float, int]:
    generator.logit_processor = kind
    run = generator.run(batch, templates if kind != "none" else None)
    return 1000 * (run.seconds - run.ttft_s) / (run.steps - 1), run.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--kinds", default="none,python,tensor,grammar")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    torch.set_num_threads(args.threads)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["workload=matched", f"batch_size={args.batch}"])
    model, tokenizer = load(cfg.model, cfg.attention, torch.device("cpu"), torch.float32)
    smiles = load_molecules(str(cfg.data.path), sample_size=args.batch).smiles
    twin = plan_workload(smiles, args.batch, tokenizer, "none", "matched", int(cfg.max_new_tokens)).batches[0]
    # Every kind at the unconstrained twin's steps: `none` runs exactly them, the template processors end there,
    # the grammar (whose numbers vary in length) is stopped there if its rows have not ended.
    batches = {kind: twin if kind == "none" else replace(twin, min_new_tokens=None) for kind in kinds}
    templates = build_templates(smiles, tokenizer, TokenizerCache(False), workers=1).templates
    generator = Generator(model, tokenizer, cfg, torch.device("cpu"), max(
        b.prompt_length + b.max_new_tokens for b in batches.values()))
    for kind in kinds:  # warm-up: one call of each kind
        step_ms(generator, kind, batches[kind], templates)
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    steps: dict[str, int] = {}
    for _ in range(args.rounds):
        for kind in kinds:
            milliseconds, steps[kind] = step_ms(generator, kind, batches[kind], templates)
            times[kind].append(milliseconds)
    base = statistics.median(times["none"]) if "none" in times else None
    print(f"batch {len(smiles)} (cdk2), {args.rounds} interleaved rounds, {torch.get_num_threads()} threads")
    for kind in kinds:
        median = statistics.median(times[kind])
        ratio = f"  {median / base:.3f}x none" if base else ""
        print(f"{kind:>8}: {median:.3f} ms/step (min {min(times[kind]):.3f}, max {max(times[kind]):.3f}), "
              f"{steps[kind]} steps{ratio}")


if __name__ == "__main__":
    main()
