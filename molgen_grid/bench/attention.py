"""Attention as a cell runs it: the implementation, a forced SDPA backend judged for itself, and what ran.

A forced SDPA backend (the sdpa_* options) must be judged by what it can run, not by what transformers asks of
it. transformers' SDPA path asks for grouped-query attention (`enable_gqa`) exactly when a batch has no padding
mask, and packs the query heads at decode steps: the memory-efficient kernel refuses the first, so whether it
"works" would depend on the batch (one row, several generations of one molecule, a static prefill without
padding). Forced cells therefore run `sdpa_forced`: the key and value heads repeated to the query heads
(plain multi-head attention, the shape every backend takes), then transformers' own SDPA function and masks.
When the backend still refuses, torch's per-backend reasons (its warnings) are kept in the cell's reason.
The copy costs memory traffic that transformers' own `sdpa` skips where a call has no mask, so
`sdpa_repeated_kv` runs the same copy on every call with PyTorch choosing the backend (`repeat_kv: true`):
forced backends compare with it without that confound, and `sdpa` against it measures the copy.

Which backend really ran is probed once per cell (`backend_probe`): torch's own dispatcher
(`torch._fused_sdp_choice`) is asked, with the same tensors and under the same forced backend, at the first
prefill and the first decode step (whose query transformers may have reshaped: the phase is the caller's word).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from molgen_grid.errors import InputError

FORCED = "sdpa_forced"
#: `attention.sdpa_backend` values: short names, or torch's SDPBackend member names in any case.
SDPA_BACKENDS = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION",
                 "math": "MATH"}
#: What torch says when a forced SDPA backend has no kernel for this device, dtype or shape (CUDA, then CPU).
NO_KERNEL = ("No available kernel", "No viable backend for scaled_dot_product_attention")
HALF_PRECISION = (torch.float16, torch.bfloat16)


class Unsupported(Exception):
    """This combination cannot run here: a result of the study (the cell ends `unsupported`), not a crash."""


class _OneGroup:
    """The attention module as transformers' SDPA function sees it once the key/value heads are repeated."""

    num_key_value_groups = 1

    def __init__(self, module: torch.nn.Module) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def forced_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    groups = getattr(module, "num_key_value_groups", 1)
    return sdpa_attention_forward(_OneGroup(module), query, repeat_kv(key, groups), repeat_kv(value, groups),
                                  attention_mask, **kwargs)


AttentionInterface.register(FORCED, forced_sdpa_attention)
AttentionMaskInterface.register(FORCED, sdpa_mask)


def implementation(attention: Any) -> str:
    """The attention implementation a cell loads: `sdpa_forced` where an SDPA backend is forced or the key/value
    heads are repeated (`repeat_kv`)."""
    repeated = attention.get("repeat_kv") and attention.implementation == "sdpa"
    return FORCED if attention.get("sdpa_backend") or repeated else str(attention.implementation)


def prepare(attention: Any, dtype: torch.dtype) -> None:
    """Refuse what cannot run (before anything loads), and set what a backend needs before its first call (its
    environment)."""
    if attention.implementation == "flash_attention_2" and dtype not in HALF_PRECISION:
        raise Unsupported(f"FlashAttention-2 runs in float16 or bfloat16 only; this cell's model runs in "
                          f"{str(dtype).removeprefix('torch.')} (set model.dtype=bfloat16 on a GPU)")
    if attention.implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        # Without it transformers would fetch the kernels-community/flash-attn2 kernel from the Hub instead.
        raise Unsupported("flash_attention_2 needs the flash-attn package, which is not installed here (nothing is "
                          "fetched at run time: no Hub kernel stands in for it)")
    for name, value in (attention.get("environment") or {}).items():
        os.environ[str(name)] = str(value)


def backend_member(name: str) -> str:
    from torch.nn.attention import SDPBackend

    member = SDPA_BACKENDS.get(str(name).lower(), str(name).upper())
    if member not in SDPBackend.__members__:
        raise InputError(f"attention.sdpa_backend {name!r} is unknown: use one of {', '.join(SDPA_BACKENDS)} or null")
    return member


@contextlib.contextmanager
def sdpa_backend(name: str | None) -> Iterator[None]:
    """Force one SDPA backend (the sdpa_* attention options); no backend named: PyTorch chooses."""
    if name is None:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(getattr(SDPBackend, backend_member(name))):
        yield


@dataclass
class BackendProbe:
    """While active, records for each phase (set by the caller: "prefill", "decode") the backend torch's
    dispatcher picks for the first SDPA call of that phase, with those very tensors."""

    phase: str = "prefill"
    seen: dict[str, str] = field(default_factory=dict)

    def choice(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: Any,
               dropout_p: float, is_causal: bool, scale: float | None, enable_gqa: bool) -> None:
        from torch.nn.attention import SDPBackend

        if self.phase in self.seen:
            return
        try:
            picked = torch._fused_sdp_choice(query, key, value, attn_mask, dropout_p, is_causal, scale=scale,
                                             enable_gqa=enable_gqa)
            self.seen[self.phase] = SDPBackend(picked).name
        except RuntimeError as exc:
            self.seen[self.phase] = f"none: {str(exc).strip().splitlines()[0]}"


@contextlib.contextmanager
def backend_probe() -> Iterator[BackendProbe]:
    """A `BackendProbe` on every call of torch's SDPA in this block."""
    probe = BackendProbe()
    original = F.scaled_dot_product_attention

    def probing(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: Any = None,
                dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                enable_gqa: bool = False) -> torch.Tensor:
        probe.choice(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
        return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                        scale=scale, enable_gqa=enable_gqa)

    F.scaled_dot_product_attention = probing
    try:
        yield probe
    finally:
        F.scaled_dot_product_attention = original


def refusal(exc: BaseException, warned: list[str]) -> str | None:
    """The reason a combination cannot run, from the library's own words, or None when `exc` is a failure.

    Only a missing optional package (flash-attn) and an SDPA backend with no kernel for this device, dtype or
    shape count; torch's per-backend warnings ("Flash attention kernel not used because: ...") follow.
    """
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else type(exc).__name__
    if isinstance(exc, Unsupported) or isinstance(exc, ImportError):
        return message
    if isinstance(exc, RuntimeError) and any(m in str(exc) for m in NO_KERNEL):
        why = list(dict.fromkeys(w.strip().splitlines()[0] for w in warned if "not used because" in w))
        return "; ".join([message, *why])
    return None
