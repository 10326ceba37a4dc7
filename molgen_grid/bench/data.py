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
from molgen_grid.words import plural

RDKIT_PREFIX = "rdkit:"
FORMATS = (".smi", ".csv", ".json", ".sdf")
#: How many invalid rows a warning quotes.
QUOTED_ROWS = 3


@dataclass
class Molecules:
    source: str
    #: Canonical SMILES, unique, in file order.
    smiles: list[str]
    #: The rows that are not molecules: (line or item number, text).
    invalid: list[tuple[int, str]]
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


def _smiles_rows(file: Path, column: str) -> Iterator[tuple[int, str]]:
    """(where, text) of each row: the line number in .smi and .csv files, the item number in .json lists."""
    suffix = file.suffix.lower()
    if suffix == ".smi":
        for line, text in enumerate(file.read_text().splitlines(), 1):
            if text.strip() and not text.lstrip().startswith("#"):
                yield line, text.split()[0]
    elif suffix == ".csv":
        with file.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or column not in reader.fieldnames:
                raise InputError(f"data file {file} has no column {column!r}: set data.column= to one of "
                                 f"{', '.join(reader.fieldnames or [])}")
            for row in reader:
                yield reader.line_num, row[column] or ""
    else:
        try:
            items = json.loads(file.read_text())
        except ValueError as exc:
            raise InputError(f"data file {file} is not valid JSON ({exc}): give a list of SMILES") from None
        if not isinstance(items, list):
            raise InputError(f"data file {file} is not a JSON list: give a list of SMILES or of objects with "
                             f"{column!r}")
        for index, item in enumerate(items, 1):
            value = item.get(column) if isinstance(item, dict) else item
            yield index, value if isinstance(value, str) else ""


def records(file: Path, column: str) -> Iterator[tuple[int, str, Chem.Mol | None]]:
    """Each row of the file: where it is, its text, and its RDKit molecule (3D, hydrogens kept, for .sdf) or
    None where it does not parse."""
    with quiet_rdkit():
        if file.suffix.lower() == ".sdf":
            for index, mol in enumerate(Chem.SDMolSupplier(str(file), removeHs=False), 1):
                yield index, f"record {index}", mol
        else:
            for where, raw in _smiles_rows(file, column):
                yield where, raw, Chem.MolFromSmiles(raw) if raw.strip() else None


def _no_valid(file: Path, invalid: int) -> InputError:
    return InputError(f"data file {file} has no valid SMILES ({invalid} rows failed to parse): "
                      "set data.path= to a file of molecules (and data.column= for .csv/.json)")


def invalid_rows(path: str, column: str) -> tuple[Path, list[tuple[int, str]]]:
    """The rows of the file that are not molecules (where, text); InputError when no row is one."""
    file = existing_file(path)
    invalid, valid = [], 0
    for where, raw, mol in records(file, column):
        if mol is None:
            invalid.append((where, raw))
        else:
            valid += 1
    if not valid:
        raise _no_valid(file, len(invalid))
    return file, invalid


def invalid_rows_warning(source: str | Path, invalid: list[tuple[int, str]]) -> str | None:
    """One line telling how many rows were skipped, quoting the first few."""
    if not invalid:
        return None
    quoted = ", ".join(f"line {where}: {text!r}" for where, text in invalid[:QUOTED_ROWS])
    more = f" and {len(invalid) - QUOTED_ROWS} more" if len(invalid) > QUOTED_ROWS else ""
    verb = "is not a valid SMILES and is" if len(invalid) == 1 else "are not valid SMILES and are"
    return f"{plural(len(invalid), 'row')} of {source} {verb} skipped ({quoted}{more})"


def load_molecules(path: str, column: str = "smiles", sample_size: int | None = None) -> Molecules:
    """The first `sample_size` distinct valid molecules of the file (all when None), as canonical SMILES."""
    file = existing_file(path)
    smiles: list[str] = []
    references: dict[str, list[Chem.Mol]] = {}
    invalid: list[tuple[int, str]] = []
    for where, raw, mol in records(file, column):
        if mol is None:
            invalid.append((where, raw))
            continue
        key = canonical_of(mol)
        if key not in references:
            smiles.append(key)
            references[key] = []
        if mol.GetNumConformers() and mol.GetConformer().Is3D():
            references[key].append(mol)
    if not smiles:
        raise _no_valid(file, len(invalid))
    chosen = smiles if sample_size is None else smiles[:int(sample_size)]
    return Molecules(str(file), chosen, invalid, {s: references[s] for s in chosen if references[s]})
