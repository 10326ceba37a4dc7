"""The clocks and figures of a cell: steps and time to first token from the step clock, spread over repeats,
noise flags."""
from __future__ import annotations

import time
from typing import Any

import pytest
import torch

from molgen_grid.bench.measure import NOISY_SPREAD, StepClock, noisy, spread
from molgen_grid.bench.provenance import provenance

from .conftest import compose, generate_batch


@pytest.mark.parametrize("sampling", ["greedy", "beam_search", "top_p_sampling4"])
def test_steps_and_first_token_of_a_tiny_generate(sampling: str, tiny: tuple[Any, Any],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    model, tokenizer = tiny
    cfg = compose("max_new_tokens=8", "workload=matched", logit_processor="none", sampling=sampling)
    seen: dict[str, Any] = {}
    generate = model.generate

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    run = generate_batch(model, tokenizer, cfg, ["CCO", "c1ccccc1"])
    assert "streamer" not in seen  # no device->host copy per generated token
    assert run.ttft_s is not None and 0 < run.ttft_s < run.seconds
    # matched without a processor: every row runs exactly the steps, whatever it writes
    assert run.steps == 8 and run.tokens_per_row == [8, 8]


def test_the_first_token_is_marked_after_every_warper(tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock's first mark comes after top-p and temperature have run on the first step's scores."""
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    model, tokenizer = tiny
    order: list[str] = []

    def recording(cls: type) -> None:
        original = cls.__call__

        def call(self: Any, input_ids: Any, scores: Any) -> Any:
            order.append(cls.__name__)
            return original(self, input_ids, scores)

        monkeypatch.setattr(cls, "__call__", call)

    for cls in (TemperatureLogitsWarper, TopPLogitsWarper, StepClock):
        recording(cls)
    cfg = compose("max_new_tokens=2", logit_processor="none", sampling="top_p_sampling10")  # temperature 1.2, top_p 0.8
    generate_batch(model, tokenizer, cfg, ["CCO"])
    assert order[:3] == ["TemperatureLogitsWarper", "TopPLogitsWarper", "StepClock"]


def test_the_clock_counts_steps_and_marks_only_the_first() -> None:
    clock = StepClock(torch.device("cpu"))
    clock.start()
    assert clock.ttft_s is None
    ids = torch.zeros(2, 3, dtype=torch.long)
    answer = clock(ids, None)
    assert answer.shape == (2,) and not answer.any()
    first = clock.ttft_s
    time.sleep(0.01)
    assert clock(ids, None) is answer  # cached: no allocation per step
    seconds, ttft = clock.stop()
    assert ttft == first and 0 < ttft < seconds and clock.steps == 2
    clock.start()  # a new call starts unmarked
    assert clock.stop()[1] is None and clock.steps == 0


def test_spread_reports_median_min_max_and_every_value() -> None:
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "values": [3.0, 1.0, 2.0]}
    assert spread([1.0, None, 3.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "values": [1.0, None, 3.0]}
    assert spread([None]) == {"median": None, "min": None, "max": None, "values": [None]}


def test_noisy_flags_a_spread_above_thirty_percent() -> None:
    assert NOISY_SPREAD == 0.3
    assert noisy("tokens_per_s", spread([100.0, 110.0, 120.0])) is None  # 20%
    warning = noisy("tokens_per_s", spread([100.0, 100.0, 140.0]))  # 40%
    assert warning is not None and "tokens_per_s" in warning and "40%" in warning
    assert noisy("tokens_per_s", spread([100.0])) is None  # one repeat: nothing to compare
    assert noisy("tokens_per_s", spread([None, None])) is None


def test_provenance_on_cpu_has_the_gpu_keys_as_none() -> None:
    report = provenance(torch.device("cpu"))
    assert {"host", "python", "torch", "transformers", "rdkit", "device", "gpu_name", "cuda"} <= set(report)
    for key in ("gpu_name", "cuda", "gpu_driver", "cudnn", "compute_capability"):
        assert key in report and report[key] is None, key
    assert report["device"] == "cpu"
