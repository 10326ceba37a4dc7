"""RDKit's own conformers (ETKDGv3, MMFF-optimised): the reference point for a model's RMSD figures.

A quality study asks how close a model's conformers come to the references; the answer means something only
beside what a classical method reaches on the same molecules (`evaluation.etkdg_reference`). The same recipe
made the embedded model's training conformers (scripts/embedded_corpus.py), so it lives here once. Seeds come
from a hash of the seed and the SMILES: the same conformers in every process and on every run.
"""
from __future__ import annotations

import hashlib
import statistics
from typing import Any

from rdkit import Chem
from rdkit.Chem import AllChem

from molgen_grid.bench.encoding import quiet_rdkit
from molgen_grid.bench.validate import Check, rmsd_quality

METHOD = "RDKit ETKDGv3 + MMFF"


def seed_of(*parts: object) -> int:
    """A 31-bit integer from a hash of `parts`: the same in every process and on every run."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest(), 16) % (2 ** 31)


def etkdg_conformers(smiles: str, count: int, seed: int, mmff: bool = True) -> Chem.Mol | None:
    """A heavy-atom molecule holding `count` ETKDGv3 conformers (MMFF-optimised when asked and possible), or
    None when embedding fails."""
    with quiet_rdkit():
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        params = AllChem.ETKDGv3()
        params.randomSeed = seed
        try:
            ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=count, params=params))
        except RuntimeError:  # RDKit's bounds-matrix invariant fails on a few odd molecules
            return None
        if not ids:
            return None
        if mmff and AllChem.MMFFHasAllMoleculeParams(mol):
            AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=500)
        return Chem.RemoveHs(mol)


def reference_point(molecules: list[str], per_molecule: int, references: dict[str, list[Chem.Mol]],
                    threshold: float, seed: int) -> dict[str, Any]:
    """ETKDG's RMSD figures on these molecules, as many conformers per molecule as the cell generates, scored
    exactly as the cell's generations are (validate.rmsd_quality)."""
    rows, checks = [], []
    for smiles in molecules:
        mol = etkdg_conformers(smiles, per_molecule, seed_of(seed, smiles))
        conformers = [] if mol is None else [Chem.Mol(mol, confId=c.GetId()) for c in mol.GetConformers()]
        for index in range(per_molecule):
            rows.append(smiles)
            checks.append(Check(True, mol=conformers[index]) if index < len(conformers) else
                          Check(False, "embedding_failed"))
    per_generation, block = rmsd_quality(rows, checks, references, threshold)
    found = [r for r in per_generation if r is not None]
    return {"method": METHOD, **block, "median_min_rmsd_A": statistics.median(found) if found else None}
