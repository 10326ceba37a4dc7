"""What the first GPU run needs, proven here on the CPU: a hang ends the cell as a result, NaN scores are
caught before any timed pass, a forced backend is judged for itself, and what ran is recorded. The GPU's own
misbehaviour cannot happen on this machine, so it is faked, and each fake says so in its test's name."""
from __future__ import annotations

import time
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from molgen_grid.bench.attention import FORCED

from .conftest import compose, run_cell

SMALL = ("sample_size=2", "batch_size=2", "max_new_tokens=16", "warmup=1", "repeats=2")


def test_a_kernel_that_hangs_ends_the_cell_unsupported_with_every_threads_traceback_faked_kernel(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake SDPA kernel that sleeps in the timed passes (a hang the seed saw with cuDNN on an H100)."""
    calls = {"n": 0, "warm": None, "woke": 0}
    original = F.scaled_dot_product_attention

    def sleeping_kernel(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls["n"] += 1
        if calls["warm"] is not None and calls["n"] > calls["warm"]:
            time.sleep(30)
            calls["woke"] += 1
        return original(*args, **kwargs)

    import molgen_grid.bench.passes as passes

    timed = passes.timed_passes

    def after_warm_up(*args: Any, **kwargs: Any) -> Any:
        calls["warm"] = calls["n"]
        return timed(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", sleeping_kernel)
    monkeypatch.setattr("molgen_grid.bench.cell.timed_passes", after_warm_up)
    cfg = compose(*SMALL, "hang.factor=1", "hang.min_s=2")
    out = run_cell(cfg, cpus=1)
    assert calls["woke"] == 0  # the cell ended while the kernel still slept: it never waited for it
    assert out["status"] == "unsupported"
    assert out["reason"].startswith("hung: no progress in 2 s (timed pass 1 of 2)"), out["reason"]
    assert "Thread MainThread" in out["detail"] and "sleeping_kernel" in out["detail"]


@pytest.mark.parametrize("policy, outcome", [("fail", FloatingPointError), ("unsupported", "unsupported")])
def test_nan_scores_on_a_row_stop_the_cell_before_any_timed_pass_faked_logits(
        tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch, policy: str, outcome: Any) -> None:
    """Faked: the model's logits are NaN on the batch's second row (what cuDNN attention gave left-padded
    rows on recent GPUs)."""
    from transformers import LlamaForCausalLM

    forward = LlamaForCausalLM.forward

    def nan_on_row_1(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = forward(self, *args, **kwargs)
        out.logits[1] = float("nan")
        return out

    monkeypatch.setattr(LlamaForCausalLM, "forward", nan_on_row_1)
    cfg = compose(*SMALL, f"numerics={policy}")
    reason = "numerics: rows 1 of a 2-row batch have NaN or inf scores at the first step"
    if outcome is FloatingPointError:
        with pytest.raises(FloatingPointError, match=reason):
            run_cell(cfg, cpus=1)
    else:
        out = run_cell(cfg, cpus=1)
        assert out["status"] == "unsupported" and out["reason"].startswith(reason)


@pytest.mark.parametrize("generations, batch", [(1, 1), (2, 2), (1, 2)])
def test_a_forced_backend_sees_plain_multi_head_attention_whatever_the_batch(generations: int, batch: int) -> None:
    """No padding (one row, or one molecule twice) used to make transformers ask SDPA for grouped-query
    attention, which some kernels refuse: a forced backend's verdict must not depend on the batch."""
    cfg = compose("sample_size=1" if batch == 1 or generations == 2 else "sample_size=2", f"batch_size={batch}",
                  f"num_generations={generations}", "max_new_tokens=8", "warmup=1", "repeats=1",
                  attention="sdpa_math")
    out = run_cell(cfg, cpus=1)
    assert out["status"] == "ok", out.get("reason")
    assert out["applied"]["attention"] == FORCED
    assert out["applied"]["sdpa_backend_ran"] == {"prefill": "MATH", "decode": "MATH"}


def test_what_ran_is_recorded_flash_attn_cudnn_option_and_tokenizer_threads() -> None:
    cfg = compose(*SMALL, attention="sdpa")
    out = run_cell(cfg, cpus=1)
    assert out["applied"]["sdpa_backend_ran"]["prefill"] in {"FLASH_ATTENTION", "MATH"}
    assert out["applied"]["tokenizers_parallelism"] == "false"
    assert "flash_attn" in out["provenance"]
    cudnn = compose("sample_size=1", "batch_size=1", "max_new_tokens=4", "warmup=0", "repeats=1",
                    attention="sdpa_cudnn")
    assert cudnn.attention.environment == {"TORCH_CUDNN_SDPA_AVOID_RECOMPILE": "1"}
    assert run_cell(cudnn, cpus=1)["status"] == "unsupported"  # no cuDNN here
    import os

    assert os.environ.get("TORCH_CUDNN_SDPA_AVOID_RECOMPILE") == "1"  # set before the first cuDNN call
