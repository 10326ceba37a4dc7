"""run_cell end to end on the tiny model, and the combinations that cannot run here."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from molgen_grid.bench.templates import TokenizerCache, build_template
from molgen_grid.bench.tokenizer import build_tokenizer
from molgen_grid.bench.validate import ISSUE_KINDS

from .conftest import compose, run_cell

FIGURES = ("tokens_per_s", "decode_tokens_per_s", "ttft_s", "step_ms", "chars_per_s", "processor_build_s")


@pytest.fixture
def two_molecules(tmp_path: Path) -> Path:
    """Templates of different lengths: the short row ends (EOS) while the long one goes on (padding)."""
    path = tmp_path / "two.smi"
    path.write_text("CO\nCCCCO\n")
    return path


def test_run_cell_end_to_end(two_molecules: Path) -> None:
    cfg = compose(f"data.path={two_molecules}", "sample_size=2", "batch_size=4", "num_generations=2",
                  "max_new_tokens=200", "warmup=1", "repeats=2", tokenizer_cache="cached")
    out = run_cell(cfg, cpus=2)
    assert out["status"] == "ok" and out.get("reason") is None
    metrics = out["metrics"]
    for name in FIGURES:
        figure = metrics[name]
        assert set(figure) == {"median", "min", "max", "values"} and len(figure["values"]) == 2
        assert figure["min"] > 0 and figure["min"] <= figure["median"] <= figure["max"]
    assert metrics["wall_s"] > 0 and metrics["peak_rss_mb"] > 0
    assert metrics["peak_gpu_mem_mb"] is None and metrics["peak_gpu_reserved_mb"] is None
    assert metrics["template_s"]["median"] > 0 and metrics["tokenize_s"]["median"] > 0
    assert metrics["tokenizer_cache"] == {"enabled": True, "hits": 2, "misses": 2}  # each molecule twice
    assert metrics["recompiles"] == 0 and metrics["compile_s"] is None and metrics["warmup_shapes"] == 1
    assert set(metrics["load"]) >= {"loadavg_before", "loadavg_after", "other_cores"}
    assert out["profile"] is None  # no profile unless asked
    # Energy: measured (a figure per pass) where the machine has a counter, else null with the reason, never both.
    energy, joules = metrics["energy"], metrics["joules"]["values"] + metrics["joules_per_token"]["values"]
    if energy["source"] is None:
        assert joules == [None] * 4 and energy["reason"].startswith("energy: unavailable (no RAPL here"), energy
    else:
        assert energy["reason"] is None and all(j > 0 for j in joules), metrics

    tokenizer = build_tokenizer()
    expected = {s: len(build_template(s, tokenizer, TokenizerCache(False)).token_ids) + 1 for s in ("CO", "CCCCO")}
    generations = out["generations"]
    assert [g["smiles"] for g in generations] == ["CO", "CO", "CCCCO", "CCCCO"]
    # Up to and including EOS, never the padding after it (the CO rows ended early in a longer batch).
    assert [g["generated_tokens"] for g in generations] == [expected[g["smiles"]] for g in generations]
    assert metrics["generated_tokens"] == sum(expected[g["smiles"]] for g in generations)
    assert metrics["generated_tokens_per_pass"] == [metrics["generated_tokens"]] * 2
    # One batch: generate() ran as many steps as its longest row needs (CCCCO's template and EOS).
    assert metrics["decode_steps"] == expected["CCCCO"] and metrics["decode_steps_per_pass"] == [expected["CCCCO"]] * 2

    quality = out["quality"]
    assert quality["generations"] == 4 and set(quality["issues"]) == set(ISSUE_KINDS)
    assert sum(quality["issues"].values()) + quality["valid"] == 4
    assert out["data"]["molecules"] == 2 and out["data"]["invalid_rows"] == 0
    assert set(out["provenance"]) >= {"host", "python", "torch", "transformers", "rdkit", "device", "gpu_name",
                                      "cuda"}


def test_unconstrained_sampling_and_static_cache() -> None:
    cfg = compose("sample_size=1", "batch_size=1", "max_new_tokens=12", "warmup=0", "repeats=1", "workload=free",
                  logit_processor="none", sampling="top_p_sampling4", kv_cache="static")
    out = run_cell(cfg, cpus=2)
    assert out["status"] == "ok"
    assert out["metrics"]["template_s"]["values"] == [0.0]
    assert 0 < out["generations"][0]["generated_tokens"] <= 12
    assert out["metrics"]["cache_length"] == len(build_tokenizer()(f"[SMILES]{out['generations'][0]['smiles']}"
                                                                   "[/SMILES]")["input_ids"]) + 12
    assert any("one timed repeat" in w for w in out["metrics"]["warnings"])


def test_a_cpu_side_cell_ranks_by_the_whole_pass_and_states_its_context(two_molecules: Path, tiny: Any) -> None:
    """cpu_side's shape (4 generations per molecule, the processor on, parallel templates, tokenizer cache):
    its ranking figure's clock holds generate() and template building, and the cell says where it ran."""
    cfg = compose(f"data.path={two_molecules}", "sample_size=2", "batch_size=4", "max_new_tokens=200", "warmup=0",
                  "repeats=2", experiment="cpu_side", template_building="parallel", tokenizer_cache="cached")
    assert int(cfg.num_generations) == 4
    out = run_cell(cfg, cpus=2)
    metrics, molecules = out["metrics"], out["data"]["molecules"]
    cache = out["metrics"]["tokenizer_cache"]  # each molecule tokenized once per pass, in parallel or not
    assert out["status"] == "ok" and molecules == 2 and (cache["hits"], cache["misses"]) == (6, 2)
    # The whole-pass clock each repeat: molecules / molecules_per_s, at least generate()'s plus the templates'.
    for rate, generate_s, template_s, tokens, tokens_per_s in zip(
            *(metrics[n]["values"] for n in ("molecules_per_s", "generate_s", "template_s")),
            metrics["generated_tokens_per_pass"], metrics["tokens_per_s"]["values"]):
        assert template_s > 0 and abs(generate_s - tokens / tokens_per_s) < 1e-9
        assert molecules / rate >= generate_s + template_s
    assert out["definitions"]["metrics.molecules_per_s"].endswith("generate() and decoding the output")
    context = out["context"]
    assert context["device"] == "cpu" and "do not transfer to a GPU" in context["caution"]
    assert context["dtype"] == "float32" and context["draft"] == "none"
    assert context["model"] == f"embedded (llama), {sum(p.numel() for p in tiny[0].parameters()) / 1e6:.3g}M parameters"
    other = out["metrics"]["load"]["other_cores"]  # the load the cell measured, said in its context
    assert context["machine load"].startswith("quiet: " if other <= 0.25 else "shared: "), (other, context)



@pytest.mark.parametrize("workload", ["matched", "free"])
def test_processor_on_and_off_run_equal_steps_when_matched(two_molecules: Path, workload: str) -> None:
    settings = (f"data.path={two_molecules}", "sample_size=2", "batch_size=2", "max_new_tokens=300", "warmup=0",
                "repeats=1", f"workload={workload}")
    on, off = (run_cell(compose(*settings, logit_processor=kind), cpus=1) for kind in ("python", "none"))
    longest = len(build_template("CCCCO", build_tokenizer(), TokenizerCache(False)).token_ids) + 1
    assert on["metrics"]["decode_steps"] == longest
    if workload == "matched":  # every unconstrained row runs every step: tokens count the same work
        assert off["metrics"]["decode_steps"] == longest and off["metrics"]["generated_tokens"] == 2 * longest
    else:  # each row stops where it writes EOS, at most max_new_tokens
        assert off["metrics"]["decode_steps"] == max(g["generated_tokens"] for g in off["generations"]) <= 300


@pytest.mark.slow  # torch.compile's inductor builds its kernels: about a minute here
def test_warm_up_runs_every_shape_and_nothing_recompiles_in_the_timed_passes(tmp_path: Path) -> None:
    path = tmp_path / "three.smi"
    path.write_text("CO\nCCCCO\nc1ccccc1\n")  # batches of 2 and 1 rows: two shapes
    cfg = compose(f"data.path={path}", "sample_size=3", "batch_size=2", "max_new_tokens=40", "warmup=1",
                  "repeats=2", logit_processor="tensor", kv_cache="static_compiled")
    out = run_cell(cfg, cpus=2)
    metrics, applied = out["metrics"], out["applied"]
    assert metrics["warmup_shapes"] == 2 and metrics["recompiles"] == 0 and metrics["compile_s"] > 0
    assert applied["cache"] == "StaticCache" and applied["cache_shape"][2] == metrics["cache_length"]
    # Every decode step of every call went through the compiled forward, every prefill stayed eager: passes over
    # the two batches: warm-up's rounds (its last, when there are several, the warm call of each shape that gives
    # compile_s; else one more), and two timed passes.
    rounds = metrics["warmup_rounds"]
    passes = max(rounds, 2) + 2
    assert applied["forward_calls"] == {"eager": passes * 2, "compiled": passes * (metrics["decode_steps"] - 2)}


def test_a_cell_that_asked_for_cuda_and_sees_none_fails_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    cfg = compose("sample_size=1", "batch_size=1", "max_new_tokens=4", "warmup=0", "repeats=1", "gpu.device=cuda")
    with pytest.raises(RuntimeError, match=r"gpu.device=cuda but this process sees no CUDA device "
                                           r"\(CUDA_VISIBLE_DEVICES=''\)"):
        run_cell(cfg, cpus=1)


def test_invalid_rows_are_told_in_the_warnings(tmp_path: Path) -> None:
    path = tmp_path / "some.smi"
    path.write_text("CO\nnot_a_smiles\nC1CC\n")
    out = run_cell(compose(f"data.path={path}", "batch_size=1", "max_new_tokens=4", "warmup=0", "repeats=1"), cpus=1)
    assert out["data"]["invalid_rows"] == 2
    assert f"2 rows of {path} are not valid SMILES and are skipped (line 2: 'not_a_smiles', line 3: 'C1CC')" \
        in out["metrics"]["warnings"]


@pytest.mark.parametrize("override, message", [
    ("attention.implementation=flash_attention_2", "FlashAttention-2 runs in float16 or bfloat16 only; this cell's "
                                                   "model runs in float32"),
    ("attention.sdpa_backend=cudnn", "backend"),
])
def test_combinations_that_cannot_run_are_unsupported(override: str, message: str) -> None:
    cfg = compose("sample_size=1", "batch_size=1", "max_new_tokens=4", "warmup=0", "repeats=1", override)
    out = run_cell(cfg, cpus=1)
    assert out["status"] == "unsupported" and message in out["reason"] and "\n" not in out["reason"]


def test_flash_attention_2_in_half_precision_without_flash_attn_says_so() -> None:
    cfg = compose("sample_size=1", "batch_size=1", "max_new_tokens=4", "warmup=0", "repeats=1", "model.dtype=bfloat16",
                  attention="flash_attention_2")
    out = run_cell(cfg, cpus=1)
    assert out["status"] == "unsupported" and "needs the flash-attn package" in out["reason"], out["reason"]


def test_a_checkpoint_cut_short_passes_the_pre_check_and_fails_its_cell_with_the_loaders_error(
        tmp_path: Path) -> None:
    """A checkpoint whose weights file is cut short passes the pre-check (its files are there) and fails when the
    cell loads it, with the loader's own error (the engine records a failing cell: tests/test_sweep.py)."""
    from molgen_grid.bench.preflight import check_inputs

    broken = tmp_path / "broken"
    shutil.copytree(Path(__file__).resolve().parents[2] / "molgen_grid" / "bench" / "embedded_model", broken)
    os.truncate(broken / "model.safetensors", 1000)
    cfg = compose(f"model.path={broken}", "sample_size=1", "batch_size=1", "max_new_tokens=12", "warmup=0",
                  "repeats=1")
    assert check_inputs(cfg) == []
    with pytest.raises(Exception) as failed:
        run_cell(cfg)
    assert type(failed.value).__name__ == "SafetensorError"


class ScriptedWarmUpClockForTest:
    """A fake clock for warm-up: run_pass runs for real, but the first passes' seconds (the warm-up rounds) are
    the script's (a slow first pass, then settling), so how many rounds warm-up takes does not hang on this
    shared machine's noise. Counts every pass it saw."""

    def __init__(self, script: list[float]) -> None:
        from molgen_grid.bench import passes

        self.real, self.script, self.calls = passes.run_pass, list(script), 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        done = self.real(*args, **kwargs)
        if self.calls < len(self.script):
            done.pass_s = self.script[self.calls]
        self.calls += 1
        return done


@pytest.mark.parametrize("most, rounds, settled", [(5, 4, True), (3, 3, False)])
def test_warm_up_goes_on_until_a_rounds_time_settles(monkeypatch: pytest.MonkeyPatch, most: int, rounds: int,
                                                    settled: bool) -> None:
    """Rounds of 1.0, 0.6, 0.5, 0.5 s with a 10% tolerance: the fourth is the first within 10% of the one before,
    so warm-up takes four rounds (then the timed pass); capped at three it stops unsettled and the cell warns."""
    from molgen_grid.bench import passes

    clock = ScriptedWarmUpClockForTest([1.0, 0.6, 0.5, 0.5, 0.5])
    monkeypatch.setattr(passes, "run_pass", clock)
    cfg = compose("sample_size=1", "batch_size=1", "max_new_tokens=4", "warmup=1", f"warmup_max={most}",
                  "warmup_tolerance=0.1", "repeats=1", logit_processor="none")
    metrics = run_cell(cfg, cpus=1)["metrics"]
    assert clock.calls == rounds + 1  # the warm-up rounds that really ran, and the timed pass
    assert metrics["warmup_rounds"] == rounds and metrics["warmup_round_s"] == [1.0, 0.6, 0.5, 0.5][:rounds]
    assert metrics["warmup_settled"] is settled
    assert any(w.startswith("warm-up did not settle in 3 rounds (the last two took 0.6 s and 0.5 s)")
               for w in metrics["warnings"]) is not settled, metrics["warnings"]
