"""The model and tokenizer of a cell: the embedded tiny Llama, or a local Hugging Face checkpoint.

The embedded model is built once, deterministically from `model.embedded` (seeded random weights), saved to a
cache directory and then loaded with `from_pretrained` like any checkpoint, so both take the same code path and
the attention implementation is chosen the same way. It is untrained: its speed figures are real, its
conformers are not chemistry (the constrained logit processor still makes them well-formed).
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

from molgen_grid.bench.attention import implementation
from molgen_grid.bench.tokenizer import build_tokenizer
from molgen_grid.errors import InputError


def cache_root() -> Path:
    """`$MOLGEN_GRID_CACHE`, else ~/.cache/molgen_grid/models (shared by every cell of every run)."""
    override = os.environ.get("MOLGEN_GRID_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "molgen_grid" / "models"


def embedded_dir(embedded: dict[str, Any]) -> Path:
    """The embedded model's directory, built on first use.

    Its name hashes the embedded config and the tokenizer's vocabulary, so changing either builds a new one.
    It is written to a temporary directory and renamed into place: concurrent cells may race, one rename wins,
    and no cell ever sees a half-written model.
    """
    tokenizer = build_tokenizer()
    key_source = json.dumps({"embedded": embedded, "vocab": tokenizer.get_vocab()}, sort_keys=True)
    target = cache_root() / f"tiny-{hashlib.sha256(key_source.encode()).hexdigest()[:12]}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
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
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_device(device: str) -> torch.device:
    """`auto`: CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto`: bfloat16 on CUDA (what the public project ran), float32 on the CPU (bfloat16 is slow there)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype):
        raise InputError(f"model.dtype {dtype!r} is not a torch dtype: use auto, float32, bfloat16 or float16")
    return resolved


def _directory(key: str, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        raise InputError(f"{key} {path} is not a directory: point it at a local Hugging Face checkpoint")
    return path


def checkpoint_files(model_cfg: Any) -> list[str]:
    """The files a cell's model and tokenizer come from: what its result depends on (its fingerprint)."""
    if model_cfg.path is None:
        directories = [embedded_dir(dict(model_cfg.embedded))]
    else:
        directories = [Path(str(model_cfg.path)).expanduser(),
                       Path(str(model_cfg.get("tokenizer_path") or model_cfg.path)).expanduser()]
    return sorted({str(p) for d in directories for p in d.iterdir() if p.is_file()})


def load(model_cfg: Any, attention_cfg: Any, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """(model, tokenizer) ready for generate(): eval mode, on `device`, tokenizer padding on the left."""
    if model_cfg.path is None:
        model_dir = tokenizer_dir = embedded_dir(dict(model_cfg.embedded))
    else:
        model_dir = _directory("model.path", model_cfg.path)
        tokenizer_dir = _directory("model.tokenizer_path", model_cfg.get("tokenizer_path") or model_cfg.path)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=implementation(attention_cfg),
                                                 dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer
