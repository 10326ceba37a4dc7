"""One cell of the study: scaled_dot_product_attention with one backend forced, timed call by call."""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(asked: str) -> torch.device:
    if asked == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(asked)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def run(cfg: Any, cell: Any) -> dict[str, Any]:
    if cfg.dtype not in DTYPES:
        raise ValueError(f"dtype={cfg.dtype!r}: one of {', '.join(DTYPES)}")
    device = pick_device(str(cfg.device))
    torch.set_num_threads(int(cfg.threads) if cfg.threads is not None else cell.cpus)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    shape = (int(cfg.batch), int(cfg.heads), int(cfg.seq), int(cfg.head_dim))
    generator = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (torch.randn(shape, generator=generator).to(device=device, dtype=DTYPES[cfg.dtype]) for _ in range(3))
    asked = {"backend": cfg.backend.name, "device": device_name(device)}
    # auto: no context, torch chooses; otherwise the one backend allowed
    forced = sdpa_kernel(getattr(SDPBackend, cfg.backend.kernel)) if cfg.backend.kernel else contextlib.nullcontext()

    def call() -> None:
        F.scaled_dot_product_attention(q, k, v, is_causal=bool(cfg.causal))

    times: list[float] = []
    with forced:
        try:
            for _ in range(int(cfg.warmup) + 1):  # at least one call: a backend that refuses says so here
                call()
        except torch.OutOfMemoryError:
            raise  # out of memory is a failure of this run, not a refusal of the backend
        except RuntimeError as exc:
            said = str(exc).strip().splitlines()
            return {"status": "unsupported", "reason": said[0] if said else type(exc).__name__, **asked}
        sync()
        for _ in range(int(cfg.repeats)):
            start = time.perf_counter()
            call()
            sync()
            times.append((time.perf_counter() - start) * 1e3)
    return {"ms_per_call": {"median": statistics.median(times), "min": min(times), "max": max(times),
                            "values": times},
            **asked, "dtype": str(cfg.dtype), "shape": list(shape),
            "threads": torch.get_num_threads(),
            "provenance": {"torch": torch.__version__}}

