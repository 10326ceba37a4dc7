"""The embedded model's training script: deterministic from its seed, its output loads and generates, and its
corpus never holds a held-out (cdk2) molecule."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from rdkit import Chem

from molgen_grid.bench.encoding import SMILES_CLOSE, SMILES_OPEN

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))

import embedded_corpus


def quick_runs(*outs: Path, draft: bool = False) -> None:
    """The quick training, once into each folder, the runs side by side (each its own process)."""
    runs = [subprocess.Popen([sys.executable, str(SCRIPTS / "train_embedded.py"), "--quick", "--seed", "3", "--out",
                              str(out), *(["--draft"] if draft else [])],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for out in outs]
    for run in runs:
        output = run.communicate(timeout=300)[0]
        assert run.returncode == 0, output


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_quick_training_is_deterministic_and_loads(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    first, second = tmp_path / "a", tmp_path / "b"
    quick_runs(first, second)
    assert digest(first / "model.safetensors") == digest(second / "model.safetensors")
    assert (first / "model.safetensors").stat().st_size <= 20 * 2 ** 20
    assert (first / "loss.png").is_file() and (first / "training.json").is_file()

    model = AutoModelForCausalLM.from_pretrained(first)
    tokenizer = AutoTokenizer.from_pretrained(first, padding_side="left")
    inputs = tokenizer([f"{SMILES_OPEN}CCO{SMILES_CLOSE}", f"{SMILES_OPEN}c1ccccc1O{SMILES_CLOSE}"],
                       return_tensors="pt", padding=True)
    first_tokens = [ids[mask.bool()][0] for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"])]
    assert first_tokens == [tokenizer.bos_token_id] * 2
    output = model.generate(**inputs, do_sample=False, max_new_tokens=8, pad_token_id=tokenizer.pad_token_id)
    assert output.shape[0] == 2 and output.shape[1] > inputs["input_ids"].shape[1]


@pytest.mark.slow
def test_quick_draft_training_is_deterministic_small_and_shares_the_vocabulary(tmp_path: Path) -> None:
    import json

    import yaml

    first, second = tmp_path / "a", tmp_path / "b"
    quick_runs(first, second, draft=True)
    assert digest(first / "model.safetensors") == digest(second / "model.safetensors")
    assert (first / "model.safetensors").stat().st_size <= 5 * 2 ** 20
    config = json.loads((first / "config.json").read_text())
    draft = yaml.safe_load((ROOT / "conf" / "model" / "tiny.yaml").read_text())["draft"]
    assert {k: config[k] for k in draft if k != "seed"} == {k: v for k, v in draft.items() if k != "seed"}
    facts = json.loads((first / "training.json").read_text())
    assert facts["command"].endswith("train_embedded.py --draft --quick")
    assert facts["architecture"]["parameters"] < 500_000 and config["vocab_size"] == 103


def text_smiles(text: str) -> str:
    return text[len(SMILES_OPEN):text.index(SMILES_CLOSE)]


@pytest.mark.slow  # several seconds: in the whole suite, not the quick half
def test_corpus_never_holds_a_cdk2_molecule() -> None:
    held_out = embedded_corpus.held_out_keys()
    selection = embedded_corpus.select_molecules()
    assert len(selection.molecules) > 5000
    for molecule in selection.molecules:
        mol = Chem.MolFromSmiles(molecule.smiles)
        assert molecule.smiles not in held_out and embedded_corpus.flat_smiles(mol) not in held_out
    first_of_each = list({m.source: m for m in reversed(selection.molecules)}.values())
    corpus = embedded_corpus.build_corpus(embedded_corpus.Selection(first_of_each, {}), 0, 1, False, 1)
    assert len(corpus.train + corpus.validation) == len(embedded_corpus.SDF_SOURCES + embedded_corpus.SMILES_SOURCES)
    for text in corpus.train + corpus.validation:
        assert embedded_corpus.flat_smiles(Chem.MolFromSmiles(text_smiles(text))) not in held_out


def test_a_cdk2_molecule_is_held_out(tmp_path: Path) -> None:
    """The filter works: a file of cdk2 molecules (one without its stereochemistry) keeps none of them."""
    cdk2 = embedded_corpus.load_molecules(embedded_corpus.HELD_OUT).smiles
    flat = embedded_corpus.flat_smiles(Chem.MolFromSmiles(cdk2[1]))
    source = tmp_path / "mixed.smi"
    source.write_text(f"{cdk2[0]}\n{flat}\nCCOc1ccccc1C(=O)N\n")
    selection = embedded_corpus.select_molecules((str(source),))
    assert [m.smiles for m in selection.molecules] == ["CCOc1ccccc1C(N)=O"]
    assert selection.counts["mixed.smi"]["held_out"] == 2
