"""The training corpus of the embedded model: conformers of molecules that ship with RDKit, cdk2 held out.

Why these molecules: they are on disk wherever the tool runs (nothing is downloaded), and the two 3D SDF files
among them give real conformers. The SMILES files get ETKDGv3 conformers (MMFF-optimised where MMFF has
parameters), seeded per molecule, so the corpus is the same on every run and in any worker process.

The default evaluation molecules (cdk2.sdf) are held out: a molecule is dropped when its canonical SMILES, with
or without stereochemistry, is one of cdk2's. Every conformer is centred and turned to its principal axes
before it is written, which removes the rotation the model could not predict anyway (RMSD aligns it away).
"""
from __future__ import annotations

from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from rdkit import Chem, RDConfig
from rdkit.Chem import rdMolTransforms

from molgen_grid.bench.data import load_molecules, records, resolve_path
from molgen_grid.bench.encoding import (CONFORMER_CLOSE, CONFORMER_OPEN, SMILES_CLOSE, SMILES_OPEN, canonical_of,
                                        encode)
from molgen_grid.bench.etkdg import etkdg_conformers, seed_of

HELD_OUT = "rdkit:Fastcluster/testdata/cdk2.sdf"
#: 3D files whose own conformers are used (hydrogens included in the files).
SDF_SOURCES = ("rdkit:PBF/testData/egfr.sdf", "rdkit:FreeWilson/data/cmet_ligands.sdf")
#: SMILES files that get ETKDG conformers. cdk2.smi and Fastcluster/testdata/converted.smi are cdk2 itself.
SMILES_SOURCES = (f"{RDConfig.RDDataDir}/NCI/first_5K.smi", "rdkit:FreeWilson/data/CHEMBL2321810.smi",
                  "rdkit:fraggle/data/ChEMBL_11265_actives.smi")
#: Heavy atoms: at most 35 keeps a text under about 1,100 tokens; under 6 there is little to learn.
MIN_HEAVY_ATOMS, MAX_HEAVY_ATOMS = 6, 35
#: Per mille of molecules (by a hash of their SMILES, so independent of the seed) kept for validation.
VALIDATION_PER_MILLE = 30


@dataclass(frozen=True)
class Molecule:
    source: str
    smiles: str
    #: The file's molecule with its 3D conformer (SDF sources); None for SMILES sources.
    mol: Chem.Mol | None = None


@dataclass
class Selection:
    molecules: list[Molecule]
    #: Per source: rows read, unparsable, multi-fragment, out of size range, duplicates, held out, kept.
    counts: dict[str, dict[str, int]]


@dataclass
class Corpus:
    train: list[str]
    validation: list[str]
    #: Per source: molecules kept, conformers written, molecules whose embedding failed.
    counts: dict[str, dict[str, int]]
    train_molecules: int
    validation_molecules: int


def short_name(source: str) -> str:
    return Path(source).name


def flat_smiles(mol: Chem.Mol) -> str:
    """Canonical SMILES without stereochemistry: another stereo form of a cdk2 molecule is held out too."""
    return Chem.MolToSmiles(Chem.RemoveHs(mol), canonical=True, isomericSmiles=False)


def held_out_keys() -> set[str]:
    """cdk2's canonical SMILES, with and without stereochemistry."""
    cdk2 = load_molecules(HELD_OUT)
    return set(cdk2.smiles) | {flat_smiles(Chem.MolFromSmiles(s)) for s in cdk2.smiles}


def select_molecules(sources: tuple[str, ...] = (*SDF_SOURCES, *SMILES_SOURCES)) -> Selection:
    """The molecules of every source, in file order: unique, one fragment, in the size range, not cdk2."""
    held_out, seen = held_out_keys(), set()
    molecules: list[Molecule] = []
    counts: dict[str, dict[str, int]] = {}
    for source in sources:
        tally = dict.fromkeys(("rows", "unparsable", "multi_fragment", "size_out_of_range", "duplicate",
                               "held_out", "kept"), 0)
        for _, _, mol in records(resolve_path(source), "smiles"):
            tally["rows"] += 1
            reason = _rejection(mol, held_out, seen)
            tally[reason] += 1
            if reason == "kept":
                smiles = canonical_of(mol)
                seen.add(smiles)
                molecules.append(Molecule(source, smiles, mol if source in SDF_SOURCES else None))
        counts[short_name(source)] = tally
    return Selection(molecules, counts)


def _rejection(mol: Chem.Mol | None, held_out: set[str], seen: set[str]) -> str:
    if mol is None:
        return "unparsable"
    if len(Chem.GetMolFrags(mol)) > 1:
        return "multi_fragment"
    if not MIN_HEAVY_ATOMS <= mol.GetNumHeavyAtoms() <= MAX_HEAVY_ATOMS:
        return "size_out_of_range"
    smiles = canonical_of(mol)
    if smiles in seen:
        return "duplicate"
    if smiles in held_out or flat_smiles(mol) in held_out:
        return "held_out"
    return "kept"


def is_validation(smiles: str) -> bool:
    return seed_of("split", smiles) % 1000 < VALIDATION_PER_MILLE


def text_of(heavy: Chem.Mol, conf_id: int) -> str:
    """One training text (BOS and EOS are added as tokens): the prompt, then the conformer as the model writes it."""
    rdMolTransforms.CanonicalizeConformer(heavy.GetConformer(conf_id))
    return (f"{SMILES_OPEN}{canonical_of(heavy)}{SMILES_CLOSE}"
            f"{CONFORMER_OPEN}{encode(heavy, conf_id)}{CONFORMER_CLOSE}")


def etkdg_texts(job: tuple[str, int, int, bool]) -> list[str]:
    """`conformers` ETKDGv3 conformers of one SMILES (MMFF-optimised when asked and possible), as texts; none when
    embedding fails (counted as an embedding failure)."""
    smiles, seed, conformers, mmff = job
    heavy = etkdg_conformers(smiles, conformers, seed, mmff)
    return [] if heavy is None else [text_of(heavy, c.GetId()) for c in heavy.GetConformers()]


def sdf_texts(mol: Chem.Mol) -> list[str]:
    return [text_of(Chem.RemoveHs(mol), -1)]


def build_corpus(selection: Selection, seed: int, conformers: int, mmff: bool, workers: int) -> Corpus:
    """Texts of every selected molecule, split by molecule (all conformers of a molecule on one side).

    ETKDG runs in `workers` processes; `imap` keeps file order, and each molecule's seed depends only on
    `seed` and its SMILES, so the corpus does not depend on the number of workers.
    """
    jobs = [(m.smiles, seed_of(seed, m.smiles), conformers, mmff) for m in selection.molecules if m.mol is None]
    with Pool(workers) as pool:
        embedded = iter(pool.imap(etkdg_texts, jobs, chunksize=16))
        texts = [sdf_texts(m.mol) if m.mol is not None else next(embedded) for m in selection.molecules]
    train, validation, counts = [], [], {}
    split = {True: 0, False: 0}
    for molecule, written in zip(selection.molecules, texts):
        tally = counts.setdefault(short_name(molecule.source), {"molecules": 0, "conformers": 0,
                                                                "embedding_failed": 0})
        tally["molecules"] += 1
        tally["conformers"] += len(written)
        tally["embedding_failed"] += not written
        if written:
            held = is_validation(molecule.smiles)
            split[held] += 1
            # One conformer per validation molecule: the loss measures unseen molecules, at half the cost.
            if held:
                validation.append(written[0])
            else:
                train.extend(written)
    return Corpus(train, validation, counts, split[False], split[True])
