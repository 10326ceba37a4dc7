"""Is a generation a conformer of its prompt? The public smoke runner's checks and failure kinds."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rdkit import Chem

from molgen_grid.bench.encoding import ConformerTextError, canonical, decode

ISSUE_KINDS = ("missing_conformer_block", "smiles_mismatch", "unclosed_coordinate_block",
               "wrong_coordinate_count", "parse_failure")


@dataclass(frozen=True)
class Check:
    valid: bool
    issue: str | None = None
    detail: str | None = None


def check_generation(prompt_smiles: str, text: str) -> Check:
    """Decode the generation and compare its molecule with the prompt's (canonical SMILES)."""
    try:
        mol = decode(text)
    except ConformerTextError as exc:
        return Check(False, exc.kind, str(exc))
    generated = Chem.MolToSmiles(mol, canonical=True, isomericSmiles=True)
    if canonical(generated) != canonical(prompt_smiles):
        return Check(False, "smiles_mismatch", f"{generated} is not {prompt_smiles}")
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
