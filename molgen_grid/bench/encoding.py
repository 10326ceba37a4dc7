"""The enriched SMILES conformer format of the public 3DMolGen project, both ways.

`[C]<x,y,z>[C]<x,y,z>1=[C]<...>...`: hydrogens removed, canonical isomeric SMILES in RDKit's output atom order,
every atom bracketed, and after each atom its coordinates truncated (not rounded) to four decimals. Decoding
reports why a text is not a conformer, in the failure kinds of the public smoke runner.
"""
from __future__ import annotations

import re
from decimal import ROUND_DOWN, Decimal

from rdkit import Chem
from rdkit.Geometry import Point3D

SMILES_OPEN, SMILES_CLOSE = "[SMILES]", "[/SMILES]"
CONFORMER_OPEN, CONFORMER_CLOSE = "[CONFORMER]", "[/CONFORMER]"
TAGS = (SMILES_OPEN, SMILES_CLOSE, CONFORMER_OPEN, CONFORMER_CLOSE)
PLACEHOLDER = "<0.0000,0.0000,0.0000>"
#: One SMILES token: a bracket atom, an organic-subset atom, or anything else (bond, ring digit, branch).
_SMILES_TOKEN = re.compile(r"\[[^\]]+\]|Br|Cl|[BCNOPSFI]|[bcnops]|\*|%\d{2}|.")
_ATOM = re.compile(r"^(\[[^\]]+\]|Br|Cl|[BCNOPSFI]|[bcnops]|\*)$")
_QUANTUM = Decimal("0.0001")
#: An atom that the format bracketed only to mark it (`[C]` for `C`): unbracketed again on decoding, since a
#: bracket atom in SMILES means "exactly these hydrogens" (none).
_MARKED_ATOM = re.compile(r"\[(Br|Cl|[BCNOPSFI]|[bcnops]|\*)\]")


class ConformerTextError(ValueError):
    """A generation that is not a conformer; `kind` is one of the smoke runner's failure kinds."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def format_coordinate(value: float) -> str:
    """Truncate toward zero to 4 decimals, always 4 digits (the decimal of the float's shortest repr)."""
    text = str(Decimal(repr(float(value))).quantize(_QUANTUM, rounding=ROUND_DOWN))
    return "0.0000" if text == "-0.0000" else text


def canonical(smiles: str) -> str | None:
    """RDKit's canonical isomeric SMILES without hydrogens, or None when it does not parse."""
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else Chem.MolToSmiles(Chem.RemoveHs(mol), canonical=True, isomericSmiles=True)


def _bracketed(token: str) -> str:
    return token if token.startswith("[") else f"[{token}]"


def _annotate(mol: Chem.Mol, block_of) -> str:
    """Canonical SMILES of `mol` with each atom bracketed and followed by `block_of(atom_index)`."""
    smiles = Chem.MolToSmiles(mol, canonical=True, isomericSmiles=True)
    order = list(mol.GetPropsAsDict(includePrivate=True, includeComputed=True)["_smilesAtomOutputOrder"])
    out, atom = [], 0
    for token in _SMILES_TOKEN.findall(smiles):
        if _ATOM.match(token):
            out.append(_bracketed(token) + block_of(order[atom]))
            atom += 1
        else:
            out.append(token)
    return "".join(out)


def encode(mol: Chem.Mol, conf_id: int = -1) -> str:
    """The conformer of `mol` (with or without hydrogens) as enriched SMILES."""
    heavy = Chem.RemoveHs(mol)
    conformer = heavy.GetConformer(conf_id)

    def block(index: int) -> str:
        p = conformer.GetAtomPosition(index)
        return f"<{format_coordinate(p.x)},{format_coordinate(p.y)},{format_coordinate(p.z)}>"

    return _annotate(heavy, block)


def skeleton(smiles: str) -> str:
    """The template of a molecule: its enriched SMILES with the placeholder for every coordinate block."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"SMILES {smiles!r} does not parse")
    return _annotate(Chem.RemoveHs(mol), lambda _: PLACEHOLDER)


def conformer_body(text: str) -> str:
    """The text between the conformer tags of a generation."""
    start = text.find(CONFORMER_OPEN)
    if start < 0:
        raise ConformerTextError("missing_conformer_block", "no [CONFORMER] block")
    body = text[start + len(CONFORMER_OPEN):]
    end = body.find(CONFORMER_CLOSE)
    return body if end < 0 else body[:end]


def split_blocks(body: str) -> tuple[str, list[str]]:
    """The SMILES with its coordinate blocks removed, and the blocks' contents in order."""
    smiles, blocks, position = [], [], 0
    while True:
        opening = body.find("<", position)
        if opening < 0:
            smiles.append(body[position:])
            break
        closing = body.find(">", opening)
        if closing < 0:
            raise ConformerTextError("unclosed_coordinate_block", "a coordinate block is never closed")
        smiles.append(body[position:opening])
        blocks.append(body[opening + 1:closing])
        position = closing + 1
    return _MARKED_ATOM.sub(r"\1", "".join(smiles)), blocks


def decode(text: str) -> Chem.Mol:
    """The molecule and 3D conformer that a generation describes (raises ConformerTextError)."""
    smiles, blocks = split_blocks(conformer_body(text))
    coordinates = []
    for block in blocks:
        parts = block.split(",")
        if len(parts) != 3:
            raise ConformerTextError("wrong_coordinate_count", f"<{block}> does not hold 3 coordinates")
        try:
            coordinates.append(tuple(float(p) for p in parts))
        except ValueError:
            raise ConformerTextError("parse_failure", f"<{block}> is not numeric") from None
    mol = Chem.MolFromSmiles(smiles, sanitize=True)
    if mol is None:
        raise ConformerTextError("parse_failure", f"RDKit cannot parse or sanitize {smiles!r}")
    if mol.GetNumAtoms() != len(coordinates):
        raise ConformerTextError("wrong_coordinate_count",
                                 f"{mol.GetNumAtoms()} atoms but {len(coordinates)} coordinate blocks")
    conformer = Chem.Conformer(mol.GetNumAtoms())
    for index, (x, y, z) in enumerate(coordinates):
        conformer.SetAtomPosition(index, Point3D(x, y, z))
    conformer.Set3D(True)
    mol.AddConformer(conformer, assignId=True)
    return mol
