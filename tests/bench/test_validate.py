"""One generation against its prompt: one test per failure kind of the public smoke runner, and a valid one."""
from __future__ import annotations

import pytest

from molgen_grid.bench.validate import ISSUE_KINDS, check_generation, quality

PROMPT = "OCC"  # canonical: CCO
VALID = "[CONFORMER][C]<0.1000,1.2000,-0.3000>[C]<1.5000,1.2000,-0.3000>[O]<2.0000,2.4000,0.1000>[/CONFORMER]"


def test_valid_generation() -> None:
    check = check_generation(PROMPT, VALID)
    assert check.valid and check.issue is None


@pytest.mark.parametrize("text, kind", [
    ("[C]<0.1,1.2,-0.3>[C]<1.5,1.2,-0.3>[O]<2.0,2.4,0.1>", "missing_conformer_block"),
    (VALID.replace("[O]", "[N]"), "smiles_mismatch"),
    ("[CONFORMER][C]<0.1000,1.2000,-0.3000>[C]<1.5000,1.20", "unclosed_coordinate_block"),
    (VALID.replace("<2.0000,2.4000,0.1000>", "<2.0000,2.4000>"), "wrong_coordinate_count"),
    (VALID.replace("2.4000", "2.4-00"), "parse_failure"),
    (VALID.replace("[O]", "[O](("), "parse_failure"),
])
def test_each_issue_kind(text: str, kind: str) -> None:
    check = check_generation(PROMPT, text)
    assert not check.valid and check.issue == kind, check


def test_quality_counts_every_kind() -> None:
    checks = [check_generation(PROMPT, VALID), check_generation(PROMPT, "no block"),
              check_generation(PROMPT, "no block either")]
    report = quality(checks)
    assert report["generations"] == 3 and report["valid"] == 1
    assert report["valid_fraction"] == pytest.approx(1 / 3)
    assert set(report["issues"]) == set(ISSUE_KINDS)
    assert report["issues"]["missing_conformer_block"] == 2 and sum(report["issues"].values()) == 2
    # No references given: the RMSD block is there, its figures None.
    assert report["rmsd"]["molecules_matched"] == 0 and report["rmsd"]["coverage_recall"] is None
