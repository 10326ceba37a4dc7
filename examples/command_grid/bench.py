#!/usr/bin/env python3
"""A toy speculative-decoding benchmark in the NWOR scripts' shape: settings as flags, one JSON file out.

Each prompt generates `--batch` sequences of `--seq-len` tokens. Per step, a draft model proposes `--draft`
tokens (0: plain decoding), the target model scores them, and speculative sampling keeps each with probability
min(1, p/q) (the first refused one is resampled from the residual). Both "models" are softmaxes over `--vocab`
seeded logits (the draft's are the target's plus noise), computed for real, so the latency is measured, not
made up; a pass of the target also does `--target-layers` rounds of vocab-sized work, whatever the number of
positions it scores (a large model's pass costs about the same for one position or a few), the draft none.
Standard library only: any python3 runs it.

    python3 bench.py --batch 2 --seq-len 32 --temperature 0.7 --draft 4 --prompts 5 --output result.json
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import random
import statistics
import time


def softmax(logits: list[float], temperature: float) -> list[float]:
    top = max(logits)
    weights = [math.exp((x - top) / temperature) for x in logits]
    total = sum(weights)
    return [w / total for w in weights]


def sample(probs: list[float], rng: random.Random) -> int:
    return rng.choices(range(len(probs)), weights=probs)[0]


class Models:
    """The target's and the draft's next-token distributions at (sequence, position), both seeded."""

    def __init__(self, vocab: int, temperature: float, seed: int, layers: int) -> None:
        self.vocab, self.temperature, self.seed, self.layers = vocab, temperature, seed, layers
        weights = random.Random(seed)
        self.weights = [weights.gauss(0.0, 1.0) for _ in range(vocab)]

    def target_pass(self) -> float:
        """The fixed cost of one pass of the target."""
        return sum(sum(w * w for w in self.weights) for _ in range(self.layers))

    @functools.lru_cache(maxsize=4096)
    def target_logits(self, sequence: int, position: int) -> list[float]:
        rng = random.Random(f"{self.seed}/{sequence}/{position}")
        return [rng.gauss(0.0, 2.0) for _ in range(self.vocab)]

    def target(self, sequence: int, position: int) -> list[float]:
        return softmax(self.target_logits(sequence, position), self.temperature)

    def draft(self, sequence: int, position: int) -> list[float]:
        rng = random.Random(f"draft/{self.seed}/{sequence}/{position}")
        logits = self.target_logits(sequence, position)
        return softmax([x + 2.0 * rng.random() for x in logits], self.temperature)


def generate(models: Models, sequence: int, length: int, draft: int, rng: random.Random,
             counts: dict[str, int]) -> None:
    """One sequence of `length` tokens; counts the target's passes and the drafted and accepted tokens."""
    position = 0
    while position < length:
        if draft == 0:
            models.target_pass()
            sample(models.target(sequence, position), rng)
            counts["target_passes"] += 1
            position += 1
            continue
        proposed = []
        for offset in range(min(draft, length - position)):
            q = models.draft(sequence, position + offset)
            proposed.append((sample(q, rng), q))
        models.target_pass()
        counts["target_passes"] += 1  # one pass of the target scores every proposed position
        counts["drafted"] += len(proposed)
        for offset, (token, q) in enumerate(proposed):
            p = models.target(sequence, position + offset)
            if rng.random() < min(1.0, p[token] / q[token]):
                counts["accepted"] += 1
                continue
            residual = [max(0.0, a - b) for a, b in zip(p, q)]
            sample(residual if sum(residual) > 0 else p, rng)
            position += offset + 1
            break
        else:
            position += len(proposed)  # every draft kept (the target's bonus token is not modelled)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1, help="sequences per prompt")
    p.add_argument("--seq-len", type=int, default=32, help="tokens per sequence")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--draft", type=int, default=0, help="tokens the draft proposes per step (0: none)")
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--target-layers", type=int, default=64, help="the target's fixed work per pass")
    p.add_argument("--prompts", type=int, default=5, help="timed prompts (each one latency value)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="result.json")
    args = p.parse_args()
    if (min(args.batch, args.seq_len, args.vocab, args.prompts) < 1 or min(args.draft, args.target_layers) < 0
            or args.temperature <= 0):
        p.error("batch, seq-len, vocab and prompts must be positive, draft and target-layers at least 0, "
                "temperature above 0")

    models = Models(args.vocab, args.temperature, args.seed, args.target_layers)
    rng = random.Random(args.seed)
    counts = {"target_passes": 0, "drafted": 0, "accepted": 0}
    per_token: list[float] = []
    for prompt in range(args.prompts):
        start = time.perf_counter()
        for sequence in range(args.batch):
            generate(models, prompt * args.batch + sequence, args.seq_len, args.draft, rng, counts)
        per_token.append((time.perf_counter() - start) * 1e3 / (args.batch * args.seq_len))
    tokens = args.prompts * args.batch * args.seq_len
    result = {
        "ms_per_token": {"median": statistics.median(per_token), "min": min(per_token), "max": max(per_token),
                         "values": per_token},
        "tokens": tokens, **counts,
        "acceptance_rate": counts["accepted"] / counts["drafted"] if counts["drafted"] else None,
        "tokens_per_target_pass": tokens / counts["target_passes"],
    }
    with open(args.output, "w") as out:
        json.dump(result, out, indent=2)
    print(f"bench.py: {tokens} tokens, {statistics.median(per_token):.3f} ms/token, "
          f"{result['tokens_per_target_pass']:.2f} tokens per target pass")


if __name__ == "__main__":
    main()
