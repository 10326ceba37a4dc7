"""`profile=torch`: a pass more under torch.profiler, its Chrome trace in the cell's directory and its top
operators in the summary, while the timed figures stay those of the timed passes alone."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import compose, run_cell

SMALL = ["sample_size=1", "batch_size=1", "max_new_tokens=12", "warmup=0", "repeats=2"]


def test_a_profiled_cell_writes_its_trace_and_top_operators_and_times_only_its_timed_passes(tmp_path: Path) -> None:
    out = run_cell(compose(*SMALL, profile="torch"), folder=tmp_path)
    assert out["status"] == "ok"
    metrics, block = out["metrics"], out["profile"]
    # the timed figures are the two timed passes', not three
    assert len(metrics["tokens_per_s"]["values"]) == 2 and len(metrics["generated_tokens_per_pass"]) == 2
    assert block["kind"] == "torch" and block["trace"] == "profile.json" and block["sorted_by"] == "self_cpu_time_total"
    ops = block["top_ops"]
    assert 0 < len(ops) <= 15 and all(op["calls"] > 0 and op["self_device_ms"] is None for op in ops)
    assert [op["self_cpu_ms"] for op in ops] == sorted((op["self_cpu_ms"] for op in ops), reverse=True)
    trace = json.loads((tmp_path / "profile.json").read_text())
    names = {event.get("name") for event in trace["traceEvents"]}
    # the pass recorded is the cell's generation: the model's attention ran in it, as the cell's did
    assert "aten::scaled_dot_product_attention" in names and {op["name"] for op in ops} <= names
    assert not list(tmp_path.glob("*.part"))


def test_top_ops_is_checked_when_the_grid_is_planned() -> None:
    from molgen_grid.bench.settings import check_setting

    message = check_setting("profile.top_ops", 0)
    assert message and "positive integer" in message, message


class FakeProfilerThatRaisesForTest:
    """Stands in for torch.profiler.profile: refused as a profiler without its permissions would be."""

    def __init__(self, **_: object) -> None:
        pass

    def __enter__(self) -> None:
        raise RuntimeError("profiler refused for this test")

    def __exit__(self, *_: object) -> None:
        pass


def test_a_failed_profiler_leaves_the_cell_done_with_its_timed_figures_and_the_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from molgen_grid.bench.trackers import profile

    monkeypatch.setattr(profile, "profile", FakeProfilerThatRaisesForTest)
    out = run_cell(compose(*SMALL, profile="torch"), folder=tmp_path)
    assert out["status"] == "ok" and len(out["metrics"]["tokens_per_s"]["values"]) == 2
    assert all(v > 0 for v in out["metrics"]["tokens_per_s"]["values"]) and out["generations"]
    assert out["profile"] == {"kind": "torch", "error": "RuntimeError: profiler refused for this test"}
    assert not (tmp_path / "profile.json").exists()
