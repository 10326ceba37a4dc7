"""A hang through the engine: the cell's code gives up from its watchdog thread, the engine records the cell
as unsupported and ends its process cleanly (nothing to requeue), and the sweep goes on."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FAST, Tool

pytestmark = pytest.mark.slow

HANGING_TASK = '''"""The benchmark's cell with a fake SDPA kernel that sleeps once warm-up is over (a faked hang)."""
import time

import torch.nn.functional as F

from molgen_grid.bench import cell

ORIGINAL = F.scaled_dot_product_attention


def run_cell(cfg, *, cpus, give_up=None):
    warm = cell.timed_passes

    def timed(*args, **kwargs):
        def sleeping_kernel(*a, **k):
            time.sleep(600)
            return ORIGINAL(*a, **k)

        F.scaled_dot_product_attention = sleeping_kernel
        return warm(*args, **kwargs)

    cell.timed_passes = timed
    return cell.run_cell(cfg, cpus=cpus, give_up=give_up)
'''


def test_a_hanging_kernel_ends_the_cell_unsupported_through_the_engine_faked_kernel(tool: Tool,
                                                                                   tmp_path: Path) -> None:
    (tmp_path / "hanging_task.py").write_text(HANGING_TASK)
    tool.extra_env["PYTHONPATH"] = str(tmp_path)
    args = [*FAST, "kv_cache=dynamic", "warmup=1", "grid.task=hanging_task.run_cell", "hang.factor=1",
            "hang.min_s=3"]
    done = tool.cli(*args, timeout=300)
    assert ": unsupported in " in done.stdout and "1 run, 0 failed" in done.stdout, done.stdout
    (cell,) = tool.status(*args)["cells"]
    assert cell["state"] == "unsupported" and cell["reason"].startswith("hung: no progress in 3 s (timed pass 1")
    summary = json.loads((tool.cell_dirs()[0] / "summary.json").read_text())
    assert "Thread MainThread" in summary["detail"] and "sleeping_kernel" in summary["detail"]
    assert not (tool.cell_dirs()[0] / "error.json").exists()
