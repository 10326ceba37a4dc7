"""Before any timed pass: are the first step's scores finite on every row, and which SDPA backend runs?

A row whose logits are NaN or inf decodes to garbage and, with no processor, may never write EOS: silent wrong
output and inflated token counts. Left-padded rows are where it starts (transformers 5 no longer repairs fully
masked rows; some fused kernels return NaN for them, and NaN spreads through the values of later layers). So
warm-up runs each distinct batch's prefill and one decode step outside generate(), with the cell's backend,
checks the first step's scores row by row, and asks torch's dispatcher which backend it picks (attention.py).
It runs on the cell's own cache (a static cache where the cell's is static: its masks and shapes are what the
timed passes run), and records the cache class the forward really used.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from molgen_grid.bench.attention import Unsupported, backend_probe, sdpa_backend

NUMERICS = ("fail", "unsupported")


@dataclass
class FirstSteps:
    #: Rows (0-based, in the batch) whose first-step scores are not all finite.
    nonfinite_rows: list[int]
    #: The SDPA backend torch picks at the first prefill and decode step ({} when the model runs no SDPA).
    backends: dict[str, str]
    #: The class of the cache the prefill and decode step ran on, as the forward returned it.
    cache: str


def first_steps(forward: Any, inputs: dict[str, torch.Tensor], backend: str | None,
                cache: Callable[[], Any] | None = None) -> FirstSteps:
    """Run the prefill and one decode step of `inputs` through `forward` (the model's eager forward), on the
    cache `cache()` gives (made inside inference mode, as generate() makes it), or the model's default one."""
    with torch.inference_mode(), sdpa_backend(backend), backend_probe() as probe:
        out = forward(**inputs, use_cache=True, **({"cache": cache()} if cache is not None else {}))
        scores = out.logits[:, -1].float()
        following = scores.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0).argmax(-1, keepdim=True)
        mask = torch.cat([inputs["attention_mask"], torch.ones_like(following)], dim=1)
        probe.phase = "decode"
        forward(input_ids=following, attention_mask=mask, cache=out.cache, use_cache=True)
    finite = torch.isfinite(scores).all(dim=-1).tolist()
    return FirstSteps([row for row, ok in enumerate(finite) if not ok], dict(probe.seen), type(out.cache).__name__)


def judge(steps: FirstSteps, rows: int, policy: str, what: str) -> None:
    """Stop the cell when a row's scores are not finite: a failure, or (`numerics: unsupported`) a result."""
    if policy not in NUMERICS:
        raise ValueError(f"numerics={policy!r}: use one of {', '.join(NUMERICS)}")
    if not steps.nonfinite_rows:
        return
    reason = (f"numerics: rows {', '.join(map(str, steps.nonfinite_rows))} of a {rows}-row batch have NaN or inf "
              f"scores at the first step ({what})")
    raise (Unsupported if policy == "unsupported" else FloatingPointError)(reason)
