"""Is a generation a conformer of its prompt? The public smoke runner's checks, in its order, and its failure kinds."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rdkit import RDLogger

from molgen_grid.bench.encoding import ConformerTextError, canonical, conformer_body, decode, split_blocks

ISSUE_KINDS = ("missing_conformer_block", "smiles_mismatch", "unclosed_coordinate_block",
               "wrong_coordinate_count", "parse_failure")


@dataclass(frozen=True)
class Check:
    valid: bool
    issue: str | None = None
    #: A human-readable line on what went wrong (kept in results.json for diagnosis).
    detail: str | None = None


def check_generation(prompt_smiles: str, text: str) -> Check:
    """Structure first (block present, blocks closed), then the molecule (same canonical SMILES), then coordinates.

    The SMILES comparison comes before the coordinate count so that a generation of another molecule is counted
    as a mismatch, not as a coordinate problem that is only its consequence.
    """
    RDLogger.DisableLog("rdApp.*")
    try:
        smiles, _ = split_blocks(conformer_body(text))
        generated = canonical(smiles)
        if generated is None:
            return Check(False, "parse_failure", f"RDKit cannot parse or sanitize {smiles!r}")
        if generated != canonical(prompt_smiles):
            return Check(False, "smiles_mismatch", f"{generated} is not {prompt_smiles}")
        decode(text)
    except ConformerTextError as exc:
        return Check(False, exc.kind, str(exc))
    finally:
        RDLogger.EnableLog("rdApp.*")
    return Check(True)


def quality(checks: list[Check]) -> dict:
    """The summary's `quality` block: counts, the valid fraction, and every issue kind (zeros included)."""
    issues = Counter(c.issue for c in checks if c.issue)
    valid = sum(c.valid for c in checks)
    return {
        "generations": len(checks),
        "valid": valid,
        "valid_fraction": valid / len(checks) if checks else None,
        "issues": {kind: issues.get(kind, 0) for kind in ISSUE_KINDS},
    }
