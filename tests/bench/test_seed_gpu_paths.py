"""The GPU paths mean what the seed meant (issue 30): the compiled static cache in the seed's grids, sampling
that says what it samples, the Hub off, flash_attention_2 without flash-attn refused before loading, the backend
probe on the cell's own cache, peak memory of the timed passes only, CUDA-graph re-records counted, and the
GPU-sharing check right in a container. What a CPU cannot show is faked, and each fake says so in its name."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import compose, generate_batch, run_cell

CONF = Path(__file__).resolve().parents[2] / "molgen_grid" / "conf"
#: The experiments that reproduce the seed's KV-cache tables (phases 1, 2, 2.5 and the combinations).
SEED_KV_EXPERIMENTS = ("attention", "kv_cache_lp", "combinations", "gpu_smoke")


@pytest.mark.parametrize("experiment", SEED_KV_EXPERIMENTS)
def test_the_seeds_kv_cache_experiments_sweep_the_compiled_static_cache_beside_the_uncompiled(
        experiment: str) -> None:
    params = yaml.safe_load((CONF / "experiment" / f"{experiment}.yaml").read_text())["hydra"]["sweeper"]["params"]
    assert {"static", "static_compiled"} <= set(params["kv_cache"].split(","))
    options = {name: yaml.safe_load((CONF / "kv_cache" / f"{name}.yaml").read_text())
               for name in ("static", "static_compiled")}
    assert options["static"]["compile"] is False and options["static_compiled"]["compile"] is True


@pytest.mark.parametrize("sampling, top_k, warper", [("temperature_0_7", 0, False), ("top_p_sampling4", 50, True)])
def test_sampling_says_its_top_k_read_back_from_the_warpers_generate_built(
        sampling: str, top_k: int, warper: bool, tiny: tuple[Any, Any]) -> None:
    """temperature_0_7 samples the whole distribution (no top-k warper); an option that leaves top_k unset gets
    transformers' default cut of 50, and the read-back says so."""
    cfg = compose("max_new_tokens=8", sampling=sampling, logit_processor="none")
    applied = generate_batch(*tiny, cfg, ["CCO"]).applied
    assert applied["do_sample"] is True and applied["top_k"] == top_k
    assert ("TopKLogitsWarper" in applied["processors"]) is warper


def test_the_hub_is_off_in_a_cells_process_before_transformers_is_imported() -> None:
    """A fresh process, its environment without the switch, imports the cell's task as the engine does."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    code = ("from molgen_grid.grid.dotted import load; load('molgen_grid.bench.cell.run_cell'); "
            "import huggingface_hub.constants as c, transformers.utils.hub as h; print(c.HF_HUB_OFFLINE, "
            "h.is_offline_mode())")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.split()[-2:] == ["True", "True"], done.stderr[-2000:]


def test_flash_attention_2_without_flash_attn_is_unsupported_before_the_model_loads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """bfloat16, so only the missing package refuses it; transformers would otherwise fetch a Hub kernel."""
    import importlib.util

    from transformers import AutoModelForCausalLM

    assert importlib.util.find_spec("flash_attn") is None  # this machine: the package is not installed

    def no_load(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_load)
    out = run_cell(compose("sample_size=1", "batch_size=1", "max_new_tokens=4", "warmup=0", "repeats=1",
                           "model.dtype=bfloat16", attention="flash_attention_2"), cpus=1)
    assert out["status"] == "unsupported"
    assert out["reason"].startswith("flash_attention_2 needs the flash-attn package, which is not installed here")


class FakeCudaForTest:
    """Stands in for torch.cuda's peak-memory reset: records the devices it was asked to reset."""

    def __init__(self) -> None:
        self.reset: list[Any] = []

    def reset_peak_memory_stats(self, device: Any) -> None:
        self.reset.append(device)


def test_peak_gpu_memory_starts_over_on_cuda_only_fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from molgen_grid.bench.measure import reset_peak_gpu_memory

    fake = FakeCudaForTest()
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", fake.reset_peak_memory_stats)
    reset_peak_gpu_memory(torch.device("cpu"))
    reset_peak_gpu_memory(torch.device("cuda", 0))
    assert fake.reset == [torch.device("cuda", 0)]


def test_static_cell_probes_its_own_cache_resets_the_peak_before_timing_and_counts_graph_records_fake_capture(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Faked: each timed pass records one CUDA graph, through torch's own record timer (what cudagraph trees
    do on a GPU when a shape or a static input changed), so the count is read back from torch."""
    from torch._dynamo.utils import dynamo_timed

    import molgen_grid.bench.passes as passes

    events: list[str] = []
    reset, run_pass = passes.reset_peak_gpu_memory, passes.run_pass

    def resetting(device: Any) -> None:
        events.append("reset")
        reset(device)

    def fake_capture_in_timed_passes(*args: Any, **kwargs: Any) -> Any:
        out = run_pass(*args, **kwargs)
        events.append("pass")
        if "reset" in events:
            with dynamo_timed("CUDAGraphNode.record"):
                pass
        return out

    monkeypatch.setattr(passes, "reset_peak_gpu_memory", resetting)
    monkeypatch.setattr(passes, "run_pass", fake_capture_in_timed_passes)
    out = run_cell(compose("sample_size=2", "batch_size=2", "max_new_tokens=8", "warmup=1", "warmup_max=1",
                           "repeats=2", logit_processor="none", kv_cache="static"), cpus=1)
    assert out["status"] == "ok", out.get("reason")
    assert out["applied"]["sdpa_probe_cache"] == "StaticCache" and out["applied"]["cache"] == "StaticCache"
    assert events == ["pass", "reset", "pass", "pass"]  # warm-up, then the reset, then the two timed passes
    assert out["metrics"]["cuda_graph_records"] == {"warmup": 0, "timed": 2}
    assert "2 CUDA graphs recorded during the timed passes: their capture time is in the figures" \
        in out["metrics"]["warnings"]
    assert out["applied"]["hub"] == {"offline": True, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def test_a_dynamic_cell_probes_a_dynamic_cache(tiny: tuple[Any, Any]) -> None:
    from molgen_grid.bench.first_steps import first_steps

    model, tokenizer = tiny
    inputs = dict(tokenizer(["[SMILES]CCO[/SMILES]"], return_tensors="pt"))
    assert first_steps(model.forward, inputs, None).cache == "DynamicCache"


class FakeNvmlForTest:
    """Stands in for pynvml: one GPU whose compute processes are `pids` (the host's pids, as NVML gives them)."""

    class NVMLError(Exception):
        pass

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        from types import SimpleNamespace

        return [SimpleNamespace(pid=pid) for pid in self.pids]


HOST_NS, CONTAINER_NS = "pid:[4026531836]", "pid:[4026532999]"


@pytest.mark.parametrize("namespace, listed, others, warning", [
    (HOST_NS, ["own", 4242], [4242], "other processes used the GPU during the cell (pids 4242)"),
    (HOST_NS, ["own"], [], None),
    (CONTAINER_NS, [98765], None, None),  # the cell itself, under its host pid: not another process
    (CONTAINER_NS, [98765, 4242], None, "at least 1 other processes used the GPU during the cell (NVML listed 2)"),
])
def test_gpu_sharing_is_told_right_on_a_host_and_in_a_container_fake_nvml(
        monkeypatch: pytest.MonkeyPatch, namespace: str, listed: list[Any], others: list[int] | None,
        warning: str | None) -> None:
    import os
    import sys

    from molgen_grid.bench import machine

    readlink = os.readlink
    monkeypatch.setattr(os, "readlink", lambda path, *a, **k: namespace if str(path) == "/proc/self/ns/pid"
                        else readlink(path, *a, **k))
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvmlForTest([os.getpid() if p == "own" else p for p in listed]))
    block, warnings = machine.competition(machine.snapshot(True), machine.snapshot(True))
    assert block["gpu_other_processes"] == others
    assert (block["gpu_sharing"] == "by pid") is (namespace == HOST_NS)
    if namespace == CONTAINER_NS:
        assert block["gpu_sharing"].startswith("this process runs in a PID namespace of its own (a container)")
    assert [w for w in warnings if "GPU" in w] == ([warning] if warning else [])


@pytest.mark.parametrize("option, kv_heads", [("sdpa", 2), ("sdpa_repeated_kv", 4), ("sdpa_math", 4)])
def test_the_kv_head_copy_is_the_options_own_read_back_from_the_tensors_sdpa_saw(
        monkeypatch: pytest.MonkeyPatch, option: str, kv_heads: int) -> None:
    """The tiny model has 4 query heads and 2 key/value heads. On a row with no padding (no mask), sdpa
    (transformers' own) passes the 2 grouped heads; sdpa_repeated_kv and the forced backends copy them to 4,
    so they compare without the copy's confound."""
    import torch
    import torch.nn.functional as F

    from molgen_grid.bench.model import load

    seen: list[int] = []
    original = F.scaled_dot_product_attention

    def recording(query: Any, key: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(key.shape[1])
        return original(query, key, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    cfg = compose("max_new_tokens=4", attention=option, logit_processor="none")
    model, tokenizer = load(cfg.model, cfg.attention, torch.device("cpu"), torch.float32)
    generate_batch(model, tokenizer, cfg, ["CCO"])
    assert model.config.num_attention_heads == 4 and set(seen) == {kv_heads}

