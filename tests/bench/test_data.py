"""Loading SMILES sets: every format, invalid rows skipped and counted, one-line errors for bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from molgen_grid.bench.data import invalid_rows, invalid_rows_warning, load_molecules
from molgen_grid.errors import InputError

ROWS = ["OCC", "not-a-smiles", "c1ccccc1O", "C1CC"]  # C1CC: unclosed ring


def test_smi(tmp_path: Path) -> None:
    path = tmp_path / "set.smi"
    path.write_text("# a comment\n" + "".join(f"{s} id{i}\n" for i, s in enumerate(ROWS)) + "\n")
    molecules = load_molecules(str(path))
    assert molecules.smiles == ["CCO", "Oc1ccccc1"]
    assert molecules.invalid == [(3, "not-a-smiles"), (5, "C1CC")] and molecules.references == {}
    warning = invalid_rows_warning(path, molecules.invalid)
    assert warning == f"2 rows of {path} are not valid SMILES and are skipped (line 3: 'not-a-smiles', line 5: 'C1CC')"
    assert invalid_rows_warning(path, [(i, "x") for i in range(5)]).endswith("line 2: 'x' and 2 more)")
    assert invalid_rows_warning(path, []) is None


def test_csv_column(tmp_path: Path) -> None:
    path = tmp_path / "set.csv"
    path.write_text("name,mol\n" + "".join(f"m{i},{s}\n" for i, s in enumerate(ROWS)))
    molecules = load_molecules(str(path), "mol")
    assert molecules.smiles == ["CCO", "Oc1ccccc1"] and molecules.invalid == [(3, "not-a-smiles"), (5, "C1CC")]
    with pytest.raises(InputError, match="no column 'smiles'.*data.column="):
        load_molecules(str(path), "smiles")


def test_json_strings_and_objects(tmp_path: Path) -> None:
    strings, objects = tmp_path / "a.json", tmp_path / "b.json"
    strings.write_text(json.dumps(ROWS))
    objects.write_text(json.dumps([{"smiles": s} for s in ROWS] + [{"other": "C"}]))
    assert load_molecules(str(strings)).smiles == ["CCO", "Oc1ccccc1"]
    from_objects = load_molecules(str(objects))
    assert from_objects.smiles == ["CCO", "Oc1ccccc1"] and len(from_objects.invalid) == 3


def test_sdf_keeps_reference_conformers() -> None:
    molecules = load_molecules("rdkit:Fastcluster/testdata/cdk2.sdf", sample_size=3)
    assert len(molecules.smiles) == 3 and molecules.invalid == []
    assert set(molecules.references) == set(molecules.smiles)
    reference = molecules.references[molecules.smiles[0]][0]
    assert reference.GetConformer().Is3D()


def test_sample_size_takes_the_first(tmp_path: Path) -> None:
    path = tmp_path / "set.smi"
    path.write_text("C\nCC\nCCC\nCCCC\n")
    assert load_molecules(str(path), sample_size=2).smiles == ["C", "CC"]
    assert len(load_molecules(str(path), sample_size=None).smiles) == 4


def test_missing_file_and_no_valid_smiles(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"does not exist: set data.path="):
        load_molecules(str(tmp_path / "absent.smi"))
    empty = tmp_path / "bad.smi"
    empty.write_text("xx\nyy\n")
    with pytest.raises(InputError, match="no valid SMILES"):
        load_molecules(str(empty))
    with pytest.raises(InputError, match="no valid SMILES"):
        invalid_rows(str(empty), "smiles")
    assert invalid_rows("rdkit:fraggle/data/ChEMBL_11265_actives.smi", "smiles")[1] == []
