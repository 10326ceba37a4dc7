"""Every option of every axis, on real cells (the benchmark's task, run in this process as the engine calls it:
the engine's own path from an override to a cell is tested on the light study): each is proven applied by what
the cell read back from the objects it ran (the loaded model, the cache generate() returned, the processors it
built, the template pool), never by the option's name echoed; the options that cannot run here are listed by name
and end `unsupported` with the library's own reason."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from conftest import FAST

from .conftest import CONF, compose, run_cell

pytestmark = pytest.mark.slow
#: What cannot run on a CPU-only machine without flash-attn, and must say why. Any other `unsupported` fails.
UNSUPPORTED_HERE = {
    ("attention", "flash_attention_2"): "FlashAttention-2 runs in float16 or bfloat16 only",
    ("attention", "sdpa_cudnn"): "No viable backend",
    ("attention", "sdpa_efficient"): "No viable backend",
    ("quantization", "int4_weight_only"): "Requires mslk",  # torchao's int4 kernels (a CUDA package)
}
#: The CPUs each cell is given, as the engine gives a local cell this machine's.
CPUS = len(os.sched_getaffinity(0))
PROCESSORS = {"none": None, "python": "PythonTemplateProcessor", "tensor": "TensorTemplateProcessor",
              "grammar": "GrammarProcessor"}


def options(axis: str) -> list[str]:
    return sorted(p.stem for p in (CONF / axis).glob("*.yaml"))


def option_file(axis: str, option: str) -> dict[str, Any]:
    return yaml.safe_load((CONF / axis / f"{option}.yaml").read_text())


def check_attention(option: str, summary: dict) -> None:
    conf, applied = option_file("attention", option), summary["applied"]
    forced = conf["sdpa_backend"]
    copies = forced or conf.get("repeat_kv")  # the K/V heads copied, as a forced backend copies them
    assert applied["attention"] == ("sdpa_forced" if copies else conf["implementation"])
    assert applied["sdpa_backend"] == forced
    if conf["implementation"] == "eager":
        assert applied["sdpa_backend_ran"] is None  # no SDPA call at all
    elif forced:  # torch's dispatcher, asked with the cell's own tensors, picks the forced backend
        member = {"flash": "FLASH_ATTENTION", "math": "MATH"}[forced]
        assert applied["sdpa_backend_ran"] == {"prefill": member, "decode": member}


def check_kv_cache(option: str, summary: dict) -> None:
    conf, applied, metrics = option_file("kv_cache", option), summary["applied"], summary["metrics"]
    if conf["implementation"] == "dynamic":
        assert applied["cache"] == "DynamicCache" and applied["cache_shape"] is None
    else:
        assert applied["cache"] == "StaticCache" and applied["cache_shape"][2] == metrics["cache_length"]
    if conf["compile"]:
        assert applied["compile"]["backend"] == "inductor" and applied["forward_calls"]["compiled"] > 0
        # FAST has no warm-up: the compile lands in the timed pass, and the cell says so
        assert metrics["recompiles"] > 0 and any("recompilations" in w for w in metrics["warnings"])
    else:
        assert applied["compile"] is None and applied["forward_calls"] is None and metrics["recompiles"] == 0


def check_template_building(option: str, summary: dict) -> None:
    conf, applied = option_file("template_building", option), summary["applied"]
    assert applied["template_workers"] == (CPUS if conf["parallel"] else 1)
    assert 1 <= applied["template_threads"] <= applied["template_workers"]


def check_tokenizer_cache(option: str, summary: dict) -> None:
    enabled = option_file("tokenizer_cache", option)["enabled"]
    cache = summary["metrics"]["tokenizer_cache"]
    assert cache["enabled"] is enabled
    assert (cache["hits"], cache["misses"]) == ((1, 1) if enabled else (0, 0))  # one molecule, two generations


def check_logit_processor(option: str, summary: dict) -> None:
    expected = PROCESSORS[option_file("logit_processor", option)["kind"]]
    applied = summary["applied"]
    assert applied["logit_processor"] == expected
    assert (expected in applied["processors"]) if expected else not any(
        p in applied["processors"] for p in PROCESSORS.values() if p)


def check_quantization(option: str, summary: dict) -> None:
    method, block = option_file("quantization", option)["method"], summary["applied"]["quantization"]
    assert block["method"] == method and block["bytes"] > 0
    linears = sum(block["weight_classes"].values())
    if method == "none":
        assert block["weight_classes"] == {"Parameter": linears} and not block["dynamic_activations"]
        return
    # every Linear holds torchao's int8 tensor, a quarter of float32's bytes (plus scales and the embedding)
    assert block["weight_classes"] == {"Int8Tensor": linears}, block
    assert block["dynamic_activations"] is (method == "int8_dynamic")
    assert block["bytes"] < block["bytes_before"] / 2 and block["torchao"], block


def check_decoding(option: str, summary: dict) -> None:
    kind, block = option_file("decoding", option)["kind"], summary["applied"]["decoding"]
    metrics = summary["metrics"]
    assert block["kind"] == kind
    assert block["candidate_generator"] == {"standard": None, "assisted": "AssistedCandidateGenerator",
                                            "prompt_lookup": "PromptLookupCandidateGenerator"}[kind]
    if kind == "standard":
        assert metrics["draft_tokens"]["median"] is None and metrics["target_forwards_per_token"]["median"] == 1.0
    else:
        assert metrics["draft_tokens"]["median"] > 0 and 0 <= metrics["acceptance_ratio"]["median"] <= 1
        assert metrics["decode_steps"] + metrics["accepted_tokens"]["median"] == metrics["generated_tokens"]


CHECKS: dict[str, tuple[list[str], Callable[[str, dict], None]]] = {
    "attention": ([], check_attention),
    "kv_cache": ([], check_kv_cache),
    "template_building": ([], check_template_building),
    "tokenizer_cache": (["num_generations=2"], check_tokenizer_cache),
    "logit_processor": ([], check_logit_processor),
    "quantization": ([], check_quantization),
    "decoding": ([], check_decoding),
}


CASES = [(axis, option) for axis in sorted(CHECKS) for option in options(axis)]


@pytest.mark.parametrize(("axis", "option"), CASES, ids=[f"{axis}={option}" for axis, option in CASES])
def test_every_option_is_applied_or_unsupported_by_name(axis: str, option: str, tmp_path: Path) -> None:
    extra, check = CHECKS[axis]
    out = run_cell(compose(*FAST, *extra, f"{axis}={option}"), cpus=CPUS, folder=tmp_path)
    if (axis, option) in UNSUPPORTED_HERE:
        assert out["status"] == "unsupported", out
        assert UNSUPPORTED_HERE[axis, option] in out["reason"], out["reason"]
        return
    assert out["status"] == "ok", out.get("reason")
    assert out["metrics"]["generated_tokens"] > 0 and out["metrics"]["tokens_per_s"]["median"] > 0
    check(option, out)
