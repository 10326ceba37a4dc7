"""The enriched SMILES format: exact text, truncation, and a lossless round trip of real conformers."""
from __future__ import annotations

import pytest
from rdkit import Chem
from rdkit.Chem import rdMolAlign

from molgen_grid.bench.data import resolve_path
from molgen_grid.bench.encoding import (PLACEHOLDER, ConformerTextError, decode, encode, format_coordinate,
                                        skeleton)


@pytest.fixture(scope="module")
def cdk2() -> list[Chem.Mol]:
    supplier = Chem.SDMolSupplier(str(resolve_path("rdkit:Fastcluster/testdata/cdk2.sdf")), removeHs=False)
    return [m for m in supplier if m is not None][:8]


@pytest.mark.parametrize("value, text", [
    (1.23459, "1.2345"), (-1.23459, "-1.2345"), (2.0, "2.0000"), (-0.00001, "0.0000"), (0.1 + 0.2, "0.3000"),
    (-12.5, "-12.5000"), (1.99999999, "1.9999"),
])
def test_coordinates_are_truncated_to_four_digits(value: float, text: str) -> None:
    assert format_coordinate(value) == text


def test_encode_brackets_every_atom_in_canonical_order() -> None:
    mol = Chem.AddHs(Chem.MolFromSmiles("OC(=O)c1cc[nH]c1"))
    conformer = Chem.Conformer(mol.GetNumAtoms())
    for atom in mol.GetAtoms():
        conformer.SetAtomPosition(atom.GetIdx(), (atom.GetIdx() + 0.123456, -1.0, 0.5))
    mol.AddConformer(conformer)
    # Canonical SMILES O=C(O)c1cc[nH]c1 writes input atoms 2, 1, 0, 3, 4, 5, 6, 7: each block is its atom's.
    block = "<{}.1234,-1.0000,0.5000>".format
    assert encode(mol) == (f"[O]{block(2)}=[C]{block(1)}([O]{block(0)})[c]{block(3)}1[c]{block(4)}[c]{block(5)}"
                           f"[nH]{block(6)}[c]{block(7)}1")


def test_skeleton_is_the_encoding_with_placeholders(cdk2: list[Chem.Mol]) -> None:
    import re

    for mol in cdk2:
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol))
        assert skeleton(smiles) == re.sub(r"<[^>]*>", PLACEHOLDER, encode(mol))


def test_round_trip_of_real_conformers(cdk2: list[Chem.Mol]) -> None:
    for mol in cdk2:
        heavy = Chem.RemoveHs(mol)
        decoded = decode(f"[CONFORMER]{encode(mol)}[/CONFORMER]")
        assert Chem.MolToSmiles(decoded) == Chem.MolToSmiles(heavy)
        assert rdMolAlign.GetBestRMS(Chem.Mol(decoded), Chem.Mol(heavy)) < 1e-3


@pytest.mark.parametrize("text, kind", [
    ("[C]<1,2,3>[O]<1,2,3>", "missing_conformer_block"),
    ("[CONFORMER][C]<1,2,3>[O]<1,2", "unclosed_coordinate_block"),
    ("[CONFORMER][C]<1,2,3>[O]<1,2>[/CONFORMER]", "wrong_coordinate_count"),
    ("[CONFORMER][C]<1,2,3>[O]<1,2,3>[O]<1,2,3>=[/CONFORMER]", "parse_failure"),
    ("[CONFORMER][C]<1,2,3>[O]<1,x,3>[/CONFORMER]", "parse_failure"),
    ("[CONFORMER][C]<1,2,3>[O]<1,2,3>[C]<1,2,3>", "wrong_coordinate_count"),
])
def test_decode_names_what_is_wrong(text: str, kind: str) -> None:
    with pytest.raises(ConformerTextError) as raised:
        decode(text.replace("[C]<1,2,3>[O]<1,2,3>[C]<1,2,3>", "[C]<1,2,3>[O]<1,2,3>[C]"))
    assert raised.value.kind == kind
