"""The enriched SMILES conformer format of the public 3DMolGen project, both ways.

`[C]<x,y,z>[C]<x,y,z>1=[C]<...>...`: hydrogens removed, canonical isomeric SMILES in RDKit's output atom order,
every atom bracketed, and after each atom its coordinates truncated (not rounded) to four decimals. Encoder and
template (`skeleton`) share one canonicalisation, so a constrained generation lines up with its template.
Decoding raises `ConformerTextError` whose `kind` is one of the public smoke runner's failure kinds, so the
validation counts the same things that runner counted.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from decimal import ROUND_DOWN, Decimal
from typing import Callable, Iterator

from rdkit import Chem, RDLogger
from rdkit.Geometry import Point3D

SMILES_OPEN, SMILES_CLOSE = "[SMILES]", "[/SMILES]"
CONFORMER_OPEN, CONFORMER_CLOSE = "[CONFORMER]", "[/CONFORMER]"
TAGS = (SMILES_OPEN, SMILES_CLOSE, CONFORMER_OPEN, CONFORMER_CLOSE)
PLACEHOLDER = "<0.0000,0.0000,0.0000>"
_ORGANIC = r"Br|Cl|[BCNOPSFI]|[bcnops]|\*"
#: One SMILES token: a bracket atom, an organic-subset atom, or anything else (bond, ring digit, branch, dot).
_SMILES_TOKEN = re.compile(rf"\[[^\]]+\]|{_ORGANIC}|%\d{{2}}|.")
_ATOM = re.compile(rf"\[[^\]]+\]|{_ORGANIC}")
#: An organic-subset atom that the format bracketed only to mark it (`[C]` for `C`). Unbracketed again when
#: decoding, because in SMILES a bracket atom means "exactly the hydrogens written" (here none).
_MARKED_ATOM = re.compile(rf"\[({_ORGANIC})\]")
_QUANTUM = Decimal("0.0001")


class ConformerTextError(ValueError):
    """A text that is not a conformer; `kind` is one of the smoke runner's failure kinds (see validate)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def prompt(smiles: str) -> str:
    """The inference prompt; BOS is not written here: the tokenizer adds it, as it did in training."""
    return f"{SMILES_OPEN}{smiles}{SMILES_CLOSE}"


def format_coordinate(value: float) -> str:
    """Truncate toward zero to 4 decimals, always 4 digits.

    Works on the float's shortest decimal repr, so 1.23449999 stays 1.2344 and 0.1 + 0.2 gives 0.3000, not a
    binary-rounding artefact; a truncated negative zero is written 0.0000.
    """
    text = str(Decimal(repr(float(value))).quantize(_QUANTUM, rounding=ROUND_DOWN))
    return "0.0000" if text == "-0.0000" else text


@contextmanager
def quiet_rdkit() -> Iterator[None]:
    """RDKit's parse warnings off: rows and generations that do not parse are counted, not printed."""
    RDLogger.DisableLog("rdApp.*")
    try:
        yield
    finally:
        RDLogger.EnableLog("rdApp.*")


def canonical_of(mol: Chem.Mol) -> str:
    """RDKit's canonical isomeric SMILES of a molecule, without hydrogens."""
    return Chem.MolToSmiles(Chem.RemoveHs(mol), canonical=True, isomericSmiles=True)


def canonical(smiles: str) -> str | None:
    """The canonical SMILES of a SMILES string, or None when it does not parse."""
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else canonical_of(mol)


def _annotate(mol: Chem.Mol, block_of: Callable[[int], str]) -> str:
    """Canonical SMILES of `mol` with each atom bracketed and followed by `block_of(atom index in mol)`."""
    smiles = Chem.MolToSmiles(mol, canonical=True, isomericSmiles=True)
    order = list(mol.GetPropsAsDict(includePrivate=True, includeComputed=True)["_smilesAtomOutputOrder"])
    out, written = [], 0
    for token in _SMILES_TOKEN.findall(smiles):
        if _ATOM.fullmatch(token):
            out.append((token if token.startswith("[") else f"[{token}]") + block_of(order[written]))
            written += 1
        else:
            out.append(token)
    return "".join(out)


def encode(mol: Chem.Mol, conf_id: int = -1) -> str:
    """The conformer `conf_id` of `mol` (with or without hydrogens) as enriched SMILES."""
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
    """The text after `[CONFORMER]`, up to `[/CONFORMER]` when the generation closed it."""
    start = text.find(CONFORMER_OPEN)
    if start < 0:
        raise ConformerTextError("missing_conformer_block", "no [CONFORMER] block")
    body = text[start + len(CONFORMER_OPEN):]
    end = body.find(CONFORMER_CLOSE)
    return body if end < 0 else body[:end]


def split_blocks(body: str) -> tuple[str, list[str]]:
    """The plain SMILES of a conformer body (blocks removed, marking brackets undone) and the blocks' contents."""
    smiles, blocks, position = [], [], 0
    while (opening := body.find("<", position)) >= 0:
        closing = body.find(">", opening)
        if closing < 0:
            raise ConformerTextError("unclosed_coordinate_block",
                                     f"coordinate block {body[opening:][:30]!r} never closes")
        smiles.append(body[position:opening])
        blocks.append(body[opening + 1:closing])
        position = closing + 1
    smiles.append(body[position:])
    return _MARKED_ATOM.sub(r"\1", "".join(smiles)), blocks


def parse_block(block: str) -> tuple[float, float, float]:
    parts = block.split(",")
    if len(parts) != 3:
        raise ConformerTextError("wrong_coordinate_count", f"<{block}> does not hold 3 coordinates")
    try:
        x, y, z = (float(p) for p in parts)
    except ValueError:
        raise ConformerTextError("parse_failure", f"<{block}> is not numeric") from None
    return x, y, z


def decode(text: str) -> Chem.Mol:
    """The molecule and 3D conformer a generation describes (atoms in the order written); ConformerTextError if not."""
    smiles, blocks = split_blocks(conformer_body(text))
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ConformerTextError("parse_failure", f"RDKit cannot parse or sanitize {smiles!r}")
    if mol.GetNumAtoms() != len(blocks):
        raise ConformerTextError("wrong_coordinate_count",
                                 f"{mol.GetNumAtoms()} atoms but {len(blocks)} coordinate blocks")
    conformer = Chem.Conformer(mol.GetNumAtoms())
    for index, block in enumerate(blocks):
        conformer.SetAtomPosition(index, Point3D(*parse_block(block)))
    conformer.Set3D(True)
    mol.AddConformer(conformer, assignId=True)
    return mol
