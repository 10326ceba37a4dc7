"""RMSD quality against reference conformers: COV-R/P and MAT-R/P, and each generation's minimum RMSD."""
from __future__ import annotations

import random

import pytest
from rdkit import Chem
from rdkit.Geometry import Point3D

from molgen_grid.bench.data import load_molecules
from molgen_grid.bench.encoding import CONFORMER_CLOSE, CONFORMER_OPEN, encode
from molgen_grid.bench.validate import RMSD_THRESHOLD_A, best_rms, check_generation, quality, rmsd_quality

CDK2 = "rdkit:Fastcluster/testdata/cdk2.sdf"
FIGURES = ("coverage_recall", "coverage_precision", "matching_recall_A", "matching_precision_A")


@pytest.fixture(scope="module")
def cdk2() -> dict[str, list[Chem.Mol]]:
    """Five molecules of cdk2.sdf and their reference conformers (3D, hydrogens kept)."""
    molecules = load_molecules(CDK2, sample_size=5)
    assert len(molecules.references) == 5
    return molecules.references


def text_of(mol: Chem.Mol) -> str:
    return CONFORMER_OPEN + encode(mol) + CONFORMER_CLOSE


def perturbed(mol: Chem.Mol, seed: int, scale: float = 1.5) -> Chem.Mol:
    """A copy of `mol` whose every atom moved by `scale` angstrom in a random direction."""
    rng = random.Random(seed)
    copy = Chem.Mol(mol)
    conformer = copy.GetConformer()
    for index in range(copy.GetNumAtoms()):
        direction = [rng.gauss(0, 1) for _ in range(3)]
        norm = sum(d * d for d in direction) ** 0.5
        p = conformer.GetAtomPosition(index)
        conformer.SetAtomPosition(index, Point3D(*(c + scale * d / norm for c, d in zip((p.x, p.y, p.z), direction))))
    return copy


def evaluate(generations: list[tuple[str, Chem.Mol | str]], references: dict[str, list[Chem.Mol]]):
    rows = [smiles for smiles, _ in generations]
    texts = [g if isinstance(g, str) else text_of(g) for _, g in generations]
    checks = [check_generation(s, t) for s, t in zip(rows, texts)]
    return checks, *rmsd_quality(rows, checks, references)


def test_the_references_themselves_are_covered_at_zero_rmsd(cdk2: dict[str, list[Chem.Mol]]) -> None:
    checks, per_generation, block = evaluate([(s, mol) for s, refs in cdk2.items() for mol in refs], cdk2)
    assert all(c.valid for c in checks)
    assert all(r is not None and r < 1e-3 for r in per_generation)  # 4-decimal truncation only
    assert block["threshold_A"] == RMSD_THRESHOLD_A == 0.75
    assert block["molecules_matched"] == block["molecules_with_references"] == 5
    assert block["coverage_recall"] == block["coverage_precision"] == 1.0
    assert block["matching_recall_A"] < 1e-3 and block["matching_precision_A"] < 1e-3


def test_a_conformer_moved_by_one_and_a_half_angstrom_is_not_covered(cdk2: dict[str, list[Chem.Mol]]) -> None:
    smiles, (reference, *_) = next(iter(cdk2.items()))
    _, per_generation, block = evaluate([(smiles, perturbed(reference, seed=0))], cdk2)
    assert per_generation[0] > RMSD_THRESHOLD_A
    assert block["molecules_matched"] == block["molecules_with_references"] == 1  # the molecules prompted
    assert block["coverage_recall"] == block["coverage_precision"] == 0.0
    assert block["matching_recall_A"] == block["matching_precision_A"] == pytest.approx(per_generation[0])


def test_recall_and_precision_differ_when_one_generation_of_two_is_off(cdk2: dict[str, list[Chem.Mol]]) -> None:
    smiles, (reference, *_) = next(iter(cdk2.items()))
    _, per_generation, block = evaluate([(smiles, reference), (smiles, perturbed(reference, seed=1))],
                                        {smiles: cdk2[smiles]})
    assert per_generation[0] < 1e-3 < RMSD_THRESHOLD_A < per_generation[1]
    assert block["coverage_recall"] == 1.0 and block["coverage_precision"] == 0.5
    assert block["matching_recall_A"] < 1e-3
    assert block["matching_precision_A"] == pytest.approx(sum(per_generation) / 2)


def test_no_references_or_no_valid_generation_gives_none(cdk2: dict[str, list[Chem.Mol]]) -> None:
    smiles, (reference, *_) = next(iter(cdk2.items()))
    # A .smi data set: no reference conformers at all.
    checks, per_generation, block = evaluate([(smiles, reference)], {})
    assert checks[0].valid and per_generation == [None]
    assert block["molecules_matched"] == block["molecules_with_references"] == 0
    assert all(block[name] is None for name in FIGURES)
    # References, but the only generation is invalid: a miss, so nothing is covered and nothing matched.
    checks, per_generation, block = evaluate([(smiles, "no conformer here")], cdk2)
    assert not checks[0].valid and per_generation == [None]
    assert block["molecules_matched"] == 0 and block["molecules_with_references"] == 1
    assert block["coverage_recall"] == block["coverage_precision"] == 0.0
    assert block["matching_recall_A"] is None and block["matching_precision_A"] is None
    # quality() keeps its keys and carries the block (figures None when none was computed).
    assert quality(checks, block)["rmsd"] is block
    assert all(quality(checks)["rmsd"][name] is None for name in FIGURES)


def test_symmetric_atoms_swapped_still_align_with_bounded_matches() -> None:
    """GetBestRMS tries symmetry-equivalent mappings (bounded by max_matches): swapped methyls are the same."""
    mol = Chem.MolFromSmiles("CC(C)(C)C")
    conformer = Chem.Conformer(5)
    coordinates = [(0.0, 0.0, 0.0), (1.5, 0.0, 0.0), (-0.5, 1.4, 0.0), (-0.5, -0.7, 1.2), (-0.5, -0.7, -1.2)]
    centre = 1  # the quaternary carbon is atom 1; the methyls are 0, 2, 3, 4
    coordinates[0], coordinates[centre] = coordinates[centre], coordinates[0]
    for index, xyz in enumerate(coordinates):
        conformer.SetAtomPosition(index, Point3D(*xyz))
    mol.AddConformer(conformer)
    swapped = Chem.Mol(mol)
    positions = swapped.GetConformer()
    first, second = positions.GetAtomPosition(0), positions.GetAtomPosition(2)
    positions.SetAtomPosition(0, second)
    positions.SetAtomPosition(2, first)
    assert best_rms(swapped, mol, max_matches=100) == pytest.approx(0.0, abs=1e-6)
    assert best_rms(Chem.MolFromSmiles("CCO"), mol) is None  # another molecule: no mapping


def test_every_generation_counts_and_every_molecule_with_references(cdk2: dict[str, list[Chem.Mol]]) -> None:
    """GEOM-Drugs convention: invalid generations are misses on the precision side, molecules whose every
    generation failed cover nothing and still count in the coverage means."""
    (first, (reference, *_)), (second, _) = list(cdk2.items())[:2]
    far = perturbed(reference, seed=2, scale=3.0)
    references = {first: [reference, perturbed(reference, seed=3, scale=1.5)], second: cdk2[second]}
    generations = [(first, reference), (first, "not a conformer"), (first, "[CONFORMER]oops"), (first, far),
                   (second, "nothing")]
    checks, per_generation, block = evaluate(generations, references)
    assert [c.valid for c in checks] == [True, False, False, True, False]
    exact, missed_a, missed_b, off, _ = per_generation
    assert exact < 1e-3 and missed_a is missed_b is None and off > RMSD_THRESHOLD_A
    # First molecule: reference 0 is covered by the exact copy, reference 1 (1.5 A away) by nothing;
    # 1 of its 4 generations is within the threshold.
    assert block["molecules_with_references"] == 2 and block["molecules_matched"] == 1
    assert block["coverage_recall"] == pytest.approx((1 / 2 + 0) / 2)
    assert block["coverage_precision"] == pytest.approx((1 / 4 + 0) / 2)
    assert block["matching_precision_A"] == pytest.approx((exact + off) / 2)
