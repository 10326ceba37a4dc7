"""The clocks and figures of a cell: time to first token from the logits hook, spread over repeats, noise flags."""
from __future__ import annotations

import time
from typing import Any

import pytest
import torch

from molgen_grid.bench.generate import Generator
from molgen_grid.bench.measure import NOISY_SPREAD, FirstTokenClock, noisy, spread
from molgen_grid.bench.provenance import provenance

from .conftest import compose


@pytest.mark.parametrize("sampling", ["greedy", "beam_search"])
def test_ttft_of_a_tiny_generate_is_within_the_call(sampling: str, tiny: tuple[Any, Any],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    model, tokenizer = tiny
    cfg = compose("max_new_tokens=8", logit_processor="none", sampling=sampling)
    generator = Generator(model, tokenizer, cfg, torch.device("cpu"))
    seen: dict[str, Any] = {}
    generate = model.generate

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    run = generator.run(["CCO"], None)
    assert "streamer" not in seen  # no device->host copy per generated token
    assert run.ttft_s is not None and 0 < run.ttft_s < run.seconds
    assert 0 < run.tokens_per_row[0] <= 8


def test_the_clock_marks_only_its_first_call() -> None:
    clock = FirstTokenClock(torch.device("cpu"))
    hook = clock.logits_hook()
    clock.start()
    assert clock.seconds is None
    scores = torch.zeros(1, 3)
    assert hook(torch.zeros(1, 1, dtype=torch.long), scores) is scores
    first = clock.seconds
    time.sleep(0.01)
    hook(torch.zeros(1, 1, dtype=torch.long), scores)
    seconds, ttft = clock.stop()
    assert ttft == first and 0 < ttft < seconds
    clock.start()  # a new call starts unmarked
    assert clock.stop()[1] is None


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
