"""Is a generation a conformer of its prompt? The public smoke runner's checks, in its order, and its failure kinds."""
from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rdkit import Chem
from rdkit.Chem import rdMolAlign

from molgen_grid.bench.encoding import ConformerTextError, canonical, conformer_body, decode, quiet_rdkit, split_blocks

ISSUE_KINDS = ("missing_conformer_block", "smiles_mismatch", "unclosed_coordinate_block",
               "wrong_coordinate_count", "parse_failure")
#: Heavy-atom RMSD (angstrom) at or under which one conformer covers another (the public project's text report).
RMSD_THRESHOLD_A = 0.75
#: At most this many atom mappings per alignment: GetBestRMS tries every symmetry-equivalent mapping, which
#: explodes on symmetric molecules; bounded, the RMSD is the best over the mappings tried (an upper bound).
RMSD_MAX_MATCHES = 1000


@dataclass(frozen=True)
class Check:
    valid: bool
    issue: str | None = None
    #: A human-readable line on what went wrong (kept in results.json for diagnosis).
    detail: str | None = None
    #: The decoded molecule and conformer of a valid generation, for RMSD (decoded once).
    mol: Chem.Mol | None = field(default=None, compare=False, repr=False)


def check_generation(prompt_smiles: str, text: str) -> Check:
    """Structure first (block present, blocks closed), then the molecule (same canonical SMILES), then coordinates.

    The SMILES comparison comes before the coordinate count so that a generation of another molecule is counted
    as a mismatch, not as a coordinate problem that is only its consequence.
    """
    try:
        with quiet_rdkit():
            smiles, _ = split_blocks(conformer_body(text))
            generated = canonical(smiles)
            if generated is None:
                return Check(False, "parse_failure", f"RDKit cannot parse or sanitize {smiles!r}")
            if generated != canonical(prompt_smiles):
                return Check(False, "smiles_mismatch", f"{generated} is not {prompt_smiles}")
            return Check(True, mol=decode(text))
    except ConformerTextError as exc:
        return Check(False, exc.kind, str(exc))


def quality(checks: list[Check], rmsd: dict[str, Any] | None = None) -> dict:
    """The summary's `quality` block: counts, the valid fraction, every issue kind (zeros included) and the
    RMSD block of `rmsd_quality` (its figures None when none was computed)."""
    issues = Counter(c.issue for c in checks if c.issue)
    valid = sum(c.valid for c in checks)
    return {
        "generations": len(checks),
        "valid": valid,
        "valid_fraction": valid / len(checks) if checks else None,
        "issues": {kind: issues.get(kind, 0) for kind in ISSUE_KINDS},
        "rmsd": rmsd if rmsd is not None else _rmsd_block([], RMSD_THRESHOLD_A),
    }


def best_rms(generated: Chem.Mol, reference: Chem.Mol, max_matches: int = RMSD_MAX_MATCHES) -> float | None:
    """RMSD of two heavy-atom conformers after the best alignment over symmetry-equivalent atom mappings
    (at most `max_matches` of them); None when the molecules do not match."""
    try:
        # GetBestRMS moves its probe: align a copy, so the caller's conformer stays as it was.
        return rdMolAlign.GetBestRMS(Chem.Mol(generated), reference, maxMatches=max_matches)
    except (RuntimeError, ValueError):
        return None


def rmsd_quality(rows: list[str], checks: list[Check], references: dict[str, list[Chem.Mol]],
                 threshold: float = RMSD_THRESHOLD_A,
                 max_matches: int = RMSD_MAX_MATCHES) -> tuple[list[float | None], dict[str, Any]]:
    """Each generation's minimum RMSD to its molecule's reference conformers, and the `rmsd` quality block.

    `rows` are the prompts' canonical SMILES (the keys of `references`, as `data.load_molecules` gives them).
    Coverage and matching follow the conformer-generation papers (GEOM-Drugs): per molecule with references,
    every generation counts, an invalid one (or one RDKit cannot align) as a miss; COV-R is the share of
    references whose best generation is within `threshold`, COV-P the share of generations within `threshold`
    of their best reference, MAT-R and MAT-P the mean of those best RMSDs over the references and over the
    aligned generations. The block averages each over every molecule with references (a molecule with no valid
    generation covers nothing; its MAT terms do not exist and `molecules_matched` says how many had one).
    Heavy atoms only: hydrogens are removed from the references, the format has none.
    """
    per_generation: list[float | None] = [None] * len(rows)
    matrices: dict[str, list[list[float | None]]] = {}
    heavy: dict[str, list[Chem.Mol]] = {}
    with quiet_rdkit():
        for index, (smiles, check) in enumerate(zip(rows, checks)):
            if not references.get(smiles):
                continue
            if smiles not in heavy:
                heavy[smiles] = [Chem.RemoveHs(mol) for mol in references[smiles]]
            row = [best_rms(check.mol, reference, max_matches) if check.valid else None
                   for reference in heavy[smiles]]
            known = [value for value in row if value is not None]
            per_generation[index] = min(known) if known else None
            matrices.setdefault(smiles, []).append(row)
    figures = [_coverage_matching(matrix, threshold) for matrix in matrices.values()]
    return per_generation, _rmsd_block(figures, threshold)


def _coverage_matching(matrix: list[list[float | None]], threshold: float) -> tuple[float, float, float | None,
                                                                                    float | None]:
    """COV-R, COV-P, MAT-R, MAT-P of one molecule from its generations x references RMSD matrix (None: a miss)."""
    def best(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return min(known) if known else None

    recall = [best([row[j] for row in matrix]) for j in range(len(matrix[0]))]
    precision = [best(row) for row in matrix]

    def covered(values: list[float | None]) -> float:
        return sum(v is not None and v <= threshold for v in values) / len(values)

    def matching(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.fmean(known) if known else None

    return covered(recall), covered(precision), matching(recall), matching(precision)


def _rmsd_block(figures: list[tuple[float, float, float | None, float | None]], threshold: float) -> dict[str, Any]:
    def mean(position: int) -> float | None:
        values = [f[position] for f in figures if f[position] is not None]
        return statistics.fmean(values) if values else None

    return {
        "threshold_A": threshold,
        "molecules_with_references": len(figures),
        "molecules_matched": sum(1 for f in figures if f[2] is not None),
        "coverage_recall": mean(0),
        "coverage_precision": mean(1),
        "matching_recall_A": mean(2),
        "matching_precision_A": mean(3),
    }
