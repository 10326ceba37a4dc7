"""What the embedded model reaches on the held-out default molecules (cdk2).

Why unconstrained and greedy: the headline figure should say what the weights learned, not what a template
forces, and greedy decoding makes it reproducible. The same prompts are also generated under the benchmark's
default constrained processor (`python`), which forces the SMILES and the block structure and leaves every
coordinate to the model: that is what a default sweep's quality columns will show. Each generation is checked
with the benchmark's own `check_generation` and, when valid, aligned to cdk2's reference conformer with
`rmsd_quality`. An ETKDG conformer of each molecule (the corpus's recipe) gives the yardstick, a flat 2D
depiction the floor.

    PYTHONPATH=. .venv/bin/python scripts/evaluate_embedded.py [--model DIR]

writes the `evaluation` block of DIR/training.json (and prints it).
"""
from __future__ import annotations

import os

# As in train_embedded.py: OpenMP threads wait passively, the machine being shared. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rdkit import Chem
from rdkit.Chem import rdDepictor
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList

sys.path.insert(0, str(Path(__file__).resolve().parent))

from embedded_corpus import HELD_OUT
from molgen_grid.bench.constraints import make_processor
from molgen_grid.bench.data import Molecules, load_molecules
from molgen_grid.bench.encoding import prompt
from molgen_grid.bench.etkdg import etkdg_conformers, seed_of
from molgen_grid.bench.generate import count_generated
from molgen_grid.bench.templates import TokenizerCache, build_template
from molgen_grid.bench.validate import best_rms, check_generation, quality, rmsd_quality

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "molgen_grid" / "bench" / "embedded_model"
MAX_NEW_TOKENS = 1200
BATCH_SIZE = 8


def load(model_dir: Path) -> tuple[Any, Any]:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    return model, AutoTokenizer.from_pretrained(model_dir, padding_side="left")


def generate_all(model: Any, tokenizer: Any, smiles: list[str], processor_kind: str, max_new_tokens: int,
                 batch_size: int) -> list[dict[str, Any]]:
    """Greedy generations of every prompt, in batches of similar prompt length (left padding), in input order,
    under the benchmark's logit processor `processor_kind` (`none`: unconstrained)."""
    order = sorted(range(len(smiles)), key=lambda i: (len(smiles[i]), i))
    cache = TokenizerCache(enabled=False)
    rows: dict[int, dict[str, Any]] = {}
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        inputs = tokenizer([prompt(smiles[i]) for i in chosen], return_tensors="pt", padding=True)
        templates = None if processor_kind == "none" else [build_template(smiles[i], tokenizer, cache) for i in chosen]
        processor = make_processor(processor_kind, templates, tokenizer, inputs["input_ids"].shape[1])
        with torch.inference_mode():
            output = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens,
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                    logits_processor=LogitsProcessorList([processor] if processor else []))
        new = output[:, inputs["input_ids"].shape[1]:].tolist()
        for i, row, count in zip(chosen, new, count_generated(new, tokenizer.eos_token_id)):
            rows[i] = {"text": decode(tokenizer, row[:count]), "tokens": count,
                       "eos": tokenizer.eos_token_id in row[:count]}
    return [rows[i] for i in range(len(smiles))]


def decode(tokenizer: Any, ids: list[int]) -> str:
    """As the benchmark decodes: the tags kept, BOS/EOS/PAD removed."""
    text = tokenizer.decode(ids, skip_special_tokens=False)
    for special in {tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token} - {None}:
        text = text.replace(special, "")
    return text


def spread(values: list[float]) -> dict[str, Any]:
    """Count, mean, median, min, max and shares under 0.75, 1 and 2 angstrom of a list of RMSDs."""
    if not values:
        return {"count": 0}
    return {"count": len(values), "mean": statistics.fmean(values), "median": statistics.median(values),
            "min": min(values), "max": max(values),
            **{f"share_within_{t}_A": sum(v <= t for v in values) / len(values) for t in (0.75, 1.0, 2.0)}}


def best_to_references(mol: Chem.Mol, references: list[Chem.Mol]) -> float | None:
    known = [r for r in (best_rms(mol, Chem.RemoveHs(ref)) for ref in references) if r is not None]
    return min(known) if known else None


def flat_conformer(smiles: str) -> Chem.Mol:
    """RDKit's 2D depiction as a conformer with z = 0: what a model that learned no 3D at all could write."""
    mol = Chem.MolFromSmiles(smiles)
    rdDepictor.Compute2DCoords(mol)
    return mol


def baselines(data: Molecules, seed: int) -> dict[str, Any]:
    """RMSD to the cdk2 references of an ETKDG conformer (the yardstick) and of a flat 2D depiction (the floor)."""
    etkdg, flat = [], []
    for smiles in data.smiles:
        conformer = etkdg_conformers(smiles, 1, seed_of(seed, smiles))
        etkdg.append(None if conformer is None else best_to_references(conformer, data.references[smiles]))
        flat.append(best_to_references(flat_conformer(smiles), data.references[smiles]))
    return {"etkdg_mmff_rmsd_A": spread([r for r in etkdg if r is not None]),
            "flat_2d_depiction_rmsd_A": spread([r for r in flat if r is not None])}


def evaluate_mode(model: Any, tokenizer: Any, data: Molecules, processor_kind: str, max_new_tokens: int,
                  batch_size: int) -> dict[str, Any]:
    """Validity, issues and RMSD of one greedy generation per molecule under `processor_kind`."""
    started = time.perf_counter()
    generations = generate_all(model, tokenizer, data.smiles, processor_kind, max_new_tokens, batch_size)
    checks = [check_generation(s, g["text"]) for s, g in zip(data.smiles, generations)]
    per_generation, rmsd_block = rmsd_quality(data.smiles, checks, data.references)
    return {
        "logit_processor": processor_kind,
        "quality": quality(checks, rmsd_block),
        "rmsd_of_valid_A": spread([r for r in per_generation if r is not None]),
        "ended_with_eos": sum(g["eos"] for g in generations),
        "generated_tokens": sum(g["tokens"] for g in generations),
        "seconds": time.perf_counter() - started,
        "per_molecule": [{"smiles": s, "valid": c.valid, "issue": c.issue, "detail": c.detail, "rmsd_A": r,
                          "tokens": g["tokens"]}
                         for s, c, r, g in zip(data.smiles, checks, per_generation, generations)],
    }


def evaluate(model_dir: Path, limit: int | None = None, max_new_tokens: int = MAX_NEW_TOKENS,
             batch_size: int = BATCH_SIZE, seed: int = 0) -> dict[str, Any]:
    """The `evaluation` block: greedy generations of the held-out molecules, unconstrained (what the weights
    learned) and under the benchmark's default constrained processor (`python`: the SMILES and the block
    structure forced, every coordinate the model's own), and the ETKDG yardstick."""
    model, tokenizer = load(model_dir)
    data = load_molecules(HELD_OUT, sample_size=limit)
    return {
        "data": HELD_OUT,
        "decoding": "greedy, float32, left padding",
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "unconstrained": evaluate_mode(model, tokenizer, data, "none", max_new_tokens, batch_size),
        "constrained": evaluate_mode(model, tokenizer, data, "python", max_new_tokens, batch_size),
        "baselines": baselines(data, seed),
    }


def summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The evaluation block without its per-molecule lists."""
    return {key: {k: v for k, v in value.items() if k != "per_molecule"} if isinstance(value, dict) else value
            for key, value in evaluation.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="checkpoint directory (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    facts_path = args.model / "training.json"
    facts = json.loads(facts_path.read_text()) if facts_path.is_file() else {}
    facts["evaluation"] = evaluate(args.model, seed=int(facts.get("seed", 0)))
    facts_path.write_text(json.dumps(facts, indent=2) + "\n")
    print(json.dumps(summary(facts["evaluation"]), indent=2))


if __name__ == "__main__":
    main()
