"""The molecules of a cell: SMILES from .smi, .csv, .json or .sdf files, invalid rows skipped and counted.

`rdkit:REL` names a file shipped with RDKit (inside RDConfig.RDContribDir), so the default needs no download.
SDF molecules keep their 3D coordinates as reference conformers (for RMSD-based quality). This module imports
RDKit only, never torch, because the preflight reads data files before anything is launched.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rdkit import Chem, RDConfig

from molgen_grid.bench.encoding import canonical_of, quiet_rdkit
from molgen_grid.errors import InputError

RDKIT_PREFIX = "rdkit:"
FORMATS = (".smi", ".csv", ".json", ".sdf")


@dataclass
class Molecules:
    source: str
    #: Canonical SMILES, unique, in file order.
    smiles: list[str]
    invalid_rows: int
    #: Reference conformers by canonical SMILES (from .sdf files).
    references: dict[str, list[Chem.Mol]] = field(default_factory=dict)


def resolve_path(path: str) -> Path:
    if path.startswith(RDKIT_PREFIX):
        return Path(RDConfig.RDContribDir) / path[len(RDKIT_PREFIX):]
    return Path(path).expanduser()


def existing_file(path: str) -> Path:
    file = resolve_path(path)
    if not file.is_file():
        raise InputError(f"data file {file} does not exist: set data.path= to a .smi, .csv, .json or .sdf file")
    if file.suffix.lower() not in FORMATS:
        raise InputError(f"data file {file} has an unknown format: set data.path= to a {', '.join(FORMATS)} file")
    return file


def _smiles_rows(file: Path, column: str) -> Iterator[str]:
    suffix = file.suffix.lower()
    if suffix == ".smi":
        for line in file.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                yield line.split()[0]
    elif suffix == ".csv":
        with file.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or column not in reader.fieldnames:
                raise InputError(f"data file {file} has no column {column!r}: set data.column= to one of "
                                 f"{', '.join(reader.fieldnames or [])}")
            for row in reader:
                yield row[column] or ""
    else:
        try:
            items = json.loads(file.read_text())
        except ValueError as exc:
            raise InputError(f"data file {file} is not valid JSON ({exc}): give a list of SMILES") from None
        if not isinstance(items, list):
            raise InputError(f"data file {file} is not a JSON list: give a list of SMILES or of objects with "
                             f"{column!r}")
        for item in items:
            value = item.get(column) if isinstance(item, dict) else item
            yield value if isinstance(value, str) else ""


def records(file: Path, column: str) -> Iterator[Chem.Mol | None]:
    """Each row of the file as an RDKit molecule (3D, hydrogens kept, for .sdf), or None where it does not parse."""
    with quiet_rdkit():
        if file.suffix.lower() == ".sdf":
            yield from Chem.SDMolSupplier(str(file), removeHs=False)
        else:
            for raw in _smiles_rows(file, column):
                yield Chem.MolFromSmiles(raw) if raw.strip() else None


def _no_valid(file: Path, invalid: int) -> InputError:
    return InputError(f"data file {file} has no valid SMILES ({invalid} rows failed to parse): "
                      "set data.path= to a file of molecules (and data.column= for .csv/.json)")


def check_has_molecule(path: str, column: str) -> None:
    """Stop at the first valid row: the preflight's cheap version of `load_molecules`."""
    file = existing_file(path)
    invalid = 0
    for mol in records(file, column):
        if mol is not None:
            return
        invalid += 1
    raise _no_valid(file, invalid)


def load_molecules(path: str, column: str = "smiles", sample_size: int | None = None) -> Molecules:
    """The first `sample_size` distinct valid molecules of the file (all when None), as canonical SMILES."""
    file = existing_file(path)
    smiles: list[str] = []
    references: dict[str, list[Chem.Mol]] = {}
    invalid = 0
    for mol in records(file, column):
        if mol is None:
            invalid += 1
            continue
        key = canonical_of(mol)
        if key not in references:
            smiles.append(key)
            references[key] = []
        if mol.GetNumConformers() and mol.GetConformer().Is3D():
            references[key].append(mol)
    if not smiles:
        raise _no_valid(file, invalid)
    chosen = smiles if sample_size is None else smiles[:int(sample_size)]
    return Molecules(str(file), chosen, invalid, {s: references[s] for s in chosen if references[s]})
