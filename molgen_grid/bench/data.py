"""The molecules of a cell: SMILES from .smi, .csv, .json or .sdf files, invalid rows skipped and counted.

`rdkit:REL` names a file shipped with RDKit (inside RDConfig.RDContribDir), so the default works with no
download. SDF molecules keep their 3D coordinates as reference conformers.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from rdkit import Chem, RDConfig, RDLogger

from molgen_grid.errors import InputError

RDKIT_PREFIX = "rdkit:"
FORMATS = (".smi", ".csv", ".json", ".sdf")


@dataclass
class Molecules:
    source: str
    smiles: list[str]
    invalid_rows: int
    #: Reference conformers by SMILES (from .sdf files), for RMSD-based quality.
    references: dict[str, list[Chem.Mol]] = field(default_factory=dict)


def resolve_path(path: str) -> Path:
    if path.startswith(RDKIT_PREFIX):
        return Path(RDConfig.RDContribDir) / path[len(RDKIT_PREFIX):]
    return Path(path).expanduser()


def _raw_rows(path: Path, column: str) -> list[str]:
    suffix = path.suffix.lower()
    if suffix == ".smi":
        return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if suffix == ".csv":
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or column not in reader.fieldnames:
                raise InputError(f"data file {path} has no column {column!r}: set data.column= to one of "
                                 f"{', '.join(reader.fieldnames or [])}")
            return [row[column] or "" for row in reader]
    if suffix == ".json":
        try:
            items = json.loads(path.read_text())
        except ValueError as exc:
            raise InputError(f"data file {path} is not valid JSON ({exc}): give a list of SMILES") from None
        if not isinstance(items, list):
            raise InputError(f"data file {path} must hold a JSON list of SMILES or of objects with {column!r}")
        return [item.get(column, "") if isinstance(item, dict) else str(item) for item in items]
    raise InputError(f"data file {path} has an unknown format: use one of {', '.join(FORMATS)}")


def load_molecules(path: str, column: str = "smiles", sample_size: int | None = None) -> Molecules:
    """Every valid molecule of the file (canonical SMILES, first `sample_size` of them)."""
    file = resolve_path(path)
    if not file.is_file():
        raise InputError(f"data file {file} does not exist: set data.path= to a .smi, .csv, .json or .sdf file")
    RDLogger.DisableLog("rdApp.*")
    try:
        smiles, invalid, references = [], 0, {}
        if file.suffix.lower() == ".sdf":
            for mol in Chem.SDMolSupplier(str(file), removeHs=False):
                if mol is None:
                    invalid += 1
                    continue
                key = Chem.MolToSmiles(Chem.RemoveHs(mol))
                if key not in references:
                    smiles.append(key)
                references.setdefault(key, []).append(mol)
        else:
            for raw in _raw_rows(file, column):
                mol = Chem.MolFromSmiles(raw) if raw.strip() else None
                if mol is None:
                    invalid += 1
                else:
                    smiles.append(Chem.MolToSmiles(mol))
    finally:
        RDLogger.EnableLog("rdApp.*")
    if not smiles:
        raise InputError(f"data file {file} has no valid SMILES ({invalid} rows failed to parse): "
                         "point data.path= at a file of molecules")
    chosen = smiles if sample_size is None else smiles[:sample_size]
    return Molecules(str(file), chosen, invalid, {s: references[s] for s in chosen if s in references})
