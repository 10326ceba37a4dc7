"""The embedded model's cache and checkpoint loading; the preflight's one-line errors without torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from molgen_grid.bench.model import EMBEDDED, checkpoint_files, load, resolve_dtype
from molgen_grid.bench.tokenizer import build_tokenizer
from molgen_grid.bench.preflight import check_inputs
from molgen_grid.errors import InputError

from .conftest import compose


def test_the_embedded_model_ships_and_loads_like_a_checkpoint(tiny: tuple[Any, Any]) -> None:
    cfg = compose()
    model, tokenizer = tiny
    assert tokenizer.padding_side == "left" and model.config.vocab_size == len(tokenizer)
    assert tokenizer.get_vocab() == build_tokenizer().get_vocab()  # the character tokenizer it was trained with
    assert sum(p.numel() for p in model.parameters()) == 2_928_640
    # A local checkpoint (here the shipped one, by its path) takes the same path and has the same weights.
    again, _ = load(compose(f"model.path={EMBEDDED}").model, cfg.attention, torch.device("cpu"), torch.float32)
    assert torch.equal(again.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert model.config._attn_implementation == "sdpa"
    # Its fingerprint is its config, weights and tokenizer, not the training log beside them.
    assert sorted(Path(f).name for f in checkpoint_files(cfg.model)) == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


def test_bad_model_inputs(tmp_path: Path) -> None:
    cfg = compose(f"model.path={tmp_path / 'absent'}")
    with pytest.raises(InputError, match="model.path .* is not a directory"):
        load(cfg.model, cfg.attention, torch.device("cpu"), torch.float32)
    with pytest.raises(InputError, match="model.dtype"):
        resolve_dtype("float99", torch.device("cpu"))
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32


def test_preflight(tmp_path: Path) -> None:
    assert check_inputs(compose()) == []
    (tmp_path / "some.smi").write_text("CCO\nnope\n")
    assert check_inputs(compose(f"data.path={tmp_path / 'some.smi'}")) == [
        f"1 row of {tmp_path / 'some.smi'} is not a valid SMILES and is skipped (line 2: 'nope')"]
    with pytest.raises(InputError, match="does not exist: set data.path="):
        check_inputs(compose(f"data.path={tmp_path / 'absent.smi'}"))
    (tmp_path / "empty.smi").write_text("nonsense\n")
    with pytest.raises(InputError, match="no valid SMILES"):
        check_inputs(compose(f"data.path={tmp_path / 'empty.smi'}"))
    with pytest.raises(InputError, match="model.path .* has no config.json"):
        check_inputs(compose(f"model.path={tmp_path}"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match="model.tokenizer_path .* has no tokenizer_config.json"):
        check_inputs(compose(f"model.path={tmp_path}"))
    with pytest.raises(InputError, match="model.tokenizer_path .* is not a directory"):
        check_inputs(compose(f"model.path={tmp_path}", f"model.tokenizer_path={tmp_path / 'absent'}"))


def test_preflight_imports_neither_torch_nor_transformers() -> None:
    code = ("import sys; sys.path.insert(0, 'tests/bench'); from conftest import compose; "
            "from molgen_grid.bench.preflight import check_inputs; check_inputs(compose()); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
