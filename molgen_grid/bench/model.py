"""The model and tokenizer of a cell: the embedded tiny Llama, or a local Hugging Face checkpoint.

The embedded model ships with the package (`embedded_model/`: weights trained by scripts/train_embedded.py from
its seed, on molecules that ship with RDKit, the default evaluation molecules held out; docs/model-card.md) and
is loaded with `from_pretrained` like any checkpoint, so both take the same code path and the attention
implementation is chosen the same way. Nothing is downloaded or trained at run time.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from molgen_grid.bench.attention import implementation
from molgen_grid.errors import InputError

#: The embedded model's checkpoint (model.path=null selects it).
EMBEDDED = Path(__file__).resolve().parent / "embedded_model"
#: A checkpoint's files that make its model and tokenizer (not, say, a training log beside them).
CHECKPOINT_NAMES = {"config.json", "generation_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"}
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".model")


def is_checkpoint_file(path: Path) -> bool:
    return path.is_file() and (path.name in CHECKPOINT_NAMES or path.name.startswith("tokenizer")
                               or path.suffix in CHECKPOINT_SUFFIXES)


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


def hub_offline() -> dict[str, Any]:
    """Switch the Hub off in this process and say what the cell sees. huggingface_hub read HF_HUB_OFFLINE when
    first imported, which may have been before the benchmark set it (bench/__init__.py); its requests and
    transformers' own check read `constants.HF_HUB_OFFLINE` at call time, so setting it here still holds."""
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True
    return {"offline": constants.is_offline_mode(),
            **{name: os.environ.get(name) for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}}


def _directory(key: str, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        raise InputError(f"{key} {path} is not a directory: point it at a local Hugging Face checkpoint")
    return path


def checkpoint_files(model_cfg: Any) -> list[str]:
    """The files a cell's model and tokenizer come from: what its result depends on (its fingerprint)."""
    if model_cfg.path is None:
        directories = [EMBEDDED]
    else:
        directories = [Path(str(model_cfg.path)).expanduser(),
                       Path(str(model_cfg.get("tokenizer_path") or model_cfg.path)).expanduser()]
    return directory_files(directories)


def directory_files(directories: list[Path]) -> list[str]:
    """The checkpoint files of `directories` (not a training log, not a sub-directory)."""
    return sorted({str(p) for d in directories for p in d.iterdir() if is_checkpoint_file(p)})


def load(model_cfg: Any, attention_cfg: Any, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """(model, tokenizer) ready for generate(): eval mode, on `device`, tokenizer padding on the left."""
    if model_cfg.path is None:
        model_dir = tokenizer_dir = EMBEDDED
    else:
        model_dir = _directory("model.path", model_cfg.path)
        tokenizer_dir = _directory("model.tokenizer_path", model_cfg.get("tokenizer_path") or model_cfg.path)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return from_checkpoint(model_dir, attention_cfg, device, dtype), tokenizer


def from_checkpoint(model_dir: Path, attention_cfg: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """A causal LM from a checkpoint directory, with the cell's attention, in eval mode on `device`."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=implementation(attention_cfg),
                                                 dtype=dtype)
    return model.to(device).eval()
