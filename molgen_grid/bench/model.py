"""The model and tokenizer of a cell: the embedded tiny Llama, or a local Hugging Face checkpoint.

The embedded model is built once, deterministically from `model.embedded` (seeded random weights), saved to a
cache directory and then loaded with `from_pretrained` like any checkpoint, so both take the same path. It is
untrained: its figures of speed are real, its conformers are not chemistry.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from molgen_grid.bench.tokenizer import build_tokenizer
from molgen_grid.errors import InputError


def cache_root() -> Path:
    return Path(os.environ.get("MOLGEN_GRID_CACHE") or Path.home() / ".cache" / "molgen_grid") / "models"


def embedded_dir(embedded: dict[str, Any]) -> Path:
    """The embedded model's directory, built on first use (atomically: concurrent cells may race)."""
    key = hashlib.sha256(json.dumps(embedded, sort_keys=True).encode()).hexdigest()[:12]
    target = cache_root() / f"tiny-{key}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    params = {k: v for k, v in embedded.items() if k != "seed"}
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True, **params)
    torch.manual_seed(int(embedded["seed"]))
    model = LlamaForCausalLM(config)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.rename(staging, target)
    except OSError:
        if not (target / "config.json").exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def load(model_cfg: Any, attention: str, device: torch.device):
    """(model, tokenizer) ready for generate(): eval mode, on the device, left padding."""
    if model_cfg.path is None:
        model_dir = tokenizer_dir = embedded_dir(dict(model_cfg.embedded))
    else:
        model_dir = Path(model_cfg.path).expanduser()
        tokenizer_dir = Path(model_cfg.tokenizer_path or model_cfg.path).expanduser()
        for what, path in (("model.path", model_dir), ("model.tokenizer_path", tokenizer_dir)):
            if not path.is_dir():
                raise InputError(f"{what} {path} is not a directory: point it at a local Hugging Face checkpoint")
    dtype = resolve_dtype(str(model_cfg.dtype), device)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=attention, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer
