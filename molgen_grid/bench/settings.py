"""The benchmark's settings and the values each may take, checked when a grid is planned (`grid.check`).

A mistake in a setting (`batch_size=0`, `sample_size=abc`, `sampling.top_p=1.5`) must be refused before
anything runs, in one line that says what the setting takes, not found by a cell's process minutes later. The
engine calls `check_setting` once per distinct value typed on the command line or written in an experiment.
"""
from __future__ import annotations

import math
from typing import Any, Callable

Rule = tuple[Callable[[Any], bool], str]


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_integer(null: bool = False) -> Rule:
    return (lambda v: (null and v is None) or (_integer(v) and v > 0),
            "a positive integer" + (" or null" if null else ""))


def number_in(low: float, high: float, low_open: bool, high_open: bool, null: bool = True) -> Rule:
    def ok(v: Any) -> bool:
        if v is None:
            return null
        return _number(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return ok, f"a number in {interval}" + (" or null" if null else "")


def one_of(*choices: Any) -> Rule:
    return (lambda v: v in choices), "one of " + ", ".join(str(c) for c in choices)


RULES: dict[str, Rule] = {
    "sample_size": positive_integer(null=True),
    "batch_size": positive_integer(),
    "num_generations": positive_integer(),
    "max_new_tokens": positive_integer(),
    "repeats": positive_integer(),
    "profile.top_ops": positive_integer(),
    "profile.first_step": positive_integer(),
    "profile.steps": positive_integer(),
    "profile.timeout_s": number_in(0, math.inf, True, True, null=False),
    "warmup": ((lambda v: _integer(v) and v >= 0), "an integer >= 0"),
    "warmup_max": ((lambda v: _integer(v) and v >= 0), "an integer >= 0"),
    "warmup_tolerance": number_in(0, math.inf, False, True, null=False),
    "seed": ((lambda v: _integer(v)), "an integer"),
    "replicate": ((lambda v: _integer(v) and v >= 0), "an integer >= 0"),
    "workload": one_of("matched", "free"),
    "evaluation.rmsd_threshold_A": number_in(0, math.inf, True, True, null=False),
    "sampling.do_sample": ((lambda v: isinstance(v, bool)), "true or false"),
    "sampling.num_beams": positive_integer(),
    "sampling.temperature": number_in(0, math.inf, True, True),
    "sampling.top_p": number_in(0, 1, True, False),
    "sampling.min_p": number_in(0, 1, False, True),
    "decoding.draft_tokens": positive_integer(),
    "decoding.schedule": one_of("constant", "heuristic", "heuristic_transient"),
    "decoding.confidence_threshold": number_in(0, 1, False, True, null=False),
    "decoding.max_matching_ngram": positive_integer(),
    "prompt_cache.mode": one_of("none", "reuse"),
    "template_building.workers": ((lambda v: v == "auto" or (_integer(v) and v > 0)), "auto or a positive integer"),
    "model.dtype": one_of("auto", "float32", "bfloat16", "float16"),
    "gpu.device": ((lambda v: isinstance(v, str) and (v in ("auto", "cpu", "cuda") or v.startswith("cuda:"))),
                   "auto, cpu, cuda or cuda:N"),
}


def check_setting(key: str, value: Any) -> str | None:
    """What `key` takes, when `value` is not one of those; None when it is (or the key has no rule)."""
    rule = RULES.get(key)
    if rule is None or rule[0](value):
        return None
    return f"{key}={value!r} is not allowed: {key} takes {rule[1]}"
