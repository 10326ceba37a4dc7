"""Every option of every axis, through the engine, on real cells: each ends done, or unsupported with the
library's own reason (a complete cell, as in the seeds' tables)."""
from __future__ import annotations

import json

import pytest

from conftest import FAST, ROOT, Tool

pytestmark = pytest.mark.slow
AXES = ["attention", "kv_cache", "template_building", "tokenizer_cache", "logit_processor"]
#: What cannot run on a CPU-only machine without flash-attn, and must say why.
UNSUPPORTED_HERE = {"attention=flash_attention_2", "attention=sdpa_cudnn"}


def options(axis: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / axis).glob("*.yaml"))


@pytest.mark.parametrize("axis", AXES)
def test_every_option_runs_or_is_unsupported_with_a_reason(tool: Tool, axis: str) -> None:
    grid = [*FAST, "kv_cache=dynamic", f"{axis}={','.join(options(axis))}"]
    tool.cli(*grid)
    cells = tool.status(*grid)["cells"]
    assert len(cells) == len(options(axis))
    for cell in cells:
        choice = f"{axis}={next(o.split('=')[1] for o in cell['overrides'] if o.startswith(axis + '='))}"
        assert cell["state"] in {"done", "unsupported"}, cell
        summary = json.loads((tool.results / "default" / cell["cell"] / "summary.json").read_text())
        assert summary["axes"][axis] == choice.split("=")[1]
        if choice in UNSUPPORTED_HERE:
            assert cell["state"] == "unsupported" and summary["reason"], summary["reason"]
        if cell["state"] == "done":
            assert summary["metrics"]["generated_tokens"] > 0
            assert summary["metrics"]["tokens_per_s"]["median"] > 0
        if choice == "kv_cache=static_compiled":
            assert summary["metrics"]["compile_s"] > 0
