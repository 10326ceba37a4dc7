"""What the embedded model reaches on the held-out default molecules (cdk2), with no logit processor.

Why unconstrained and greedy: the figure should say what the weights learned, not what the template forces;
greedy decoding makes it reproducible. Each generation is checked with the benchmark's own `check_generation`
and, when valid, aligned to cdk2's reference conformer with `rmsd_quality`. An ETKDG conformer of each molecule
(the corpus's recipe) gives the yardstick.

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
from rdkit.Chem import AllChem
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from embedded_corpus import HELD_OUT, stable_int
from molgen_grid.bench.data import Molecules, load_molecules
from molgen_grid.bench.generate import count_generated, prompt
from molgen_grid.bench.validate import best_rms, check_generation, quality, rmsd_quality

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "molgen_grid" / "bench" / "embedded_model"
MAX_NEW_TOKENS = 1200
BATCH_SIZE = 8


def generate_all(model_dir: Path, smiles: list[str], max_new_tokens: int, batch_size: int) -> list[dict[str, Any]]:
    """Greedy generations of every prompt, in batches of similar prompt length (left padding), in input order."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    order = sorted(range(len(smiles)), key=lambda i: (len(smiles[i]), i))
    rows: dict[int, dict[str, Any]] = {}
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        inputs = tokenizer([prompt(smiles[i]) for i in chosen], return_tensors="pt", padding=True)
        with torch.inference_mode():
            output = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens,
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
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


def etkdg_baseline(data: Molecules, seed: int) -> dict[str, Any]:
    """RMSD of one seeded ETKDGv3 + MMFF conformer per molecule (the corpus's recipe) to its cdk2 reference."""
    values = []
    for smiles in data.smiles:
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        params = AllChem.ETKDGv3()
        params.randomSeed = stable_int(seed, smiles)
        if AllChem.EmbedMolecule(mol, params) < 0:
            continue
        AllChem.MMFFOptimizeMolecule(mol, maxIters=500)
        heavy = Chem.RemoveHs(mol)
        known = [r for r in (best_rms(heavy, Chem.RemoveHs(ref)) for ref in data.references[smiles]) if r is not None]
        if known:
            values.append(min(known))
    return {"recipe": "one ETKDGv3 conformer, MMFF-optimised, per molecule", "rmsd_A": spread(values)}


def evaluate(model_dir: Path, limit: int | None = None, max_new_tokens: int = MAX_NEW_TOKENS,
             batch_size: int = BATCH_SIZE, seed: int = 0) -> dict[str, Any]:
    """The `evaluation` block: validity, issues and RMSD of greedy generations of the held-out molecules."""
    started = time.perf_counter()
    data = load_molecules(HELD_OUT, sample_size=limit)
    generations = generate_all(model_dir, data.smiles, max_new_tokens, batch_size)
    checks = [check_generation(s, g["text"]) for s, g in zip(data.smiles, generations)]
    per_generation, rmsd_block = rmsd_quality(data.smiles, checks, data.references)
    return {
        "data": HELD_OUT,
        "decoding": "greedy, no logit processor, float32, left padding",
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "quality": quality(checks, rmsd_block),
        "rmsd_of_valid_A": spread([r for r in per_generation if r is not None]),
        "ended_with_eos": sum(g["eos"] for g in generations),
        "generated_tokens": sum(g["tokens"] for g in generations),
        "etkdg_baseline": etkdg_baseline(data, seed),
        "seconds": time.perf_counter() - started,
        "per_molecule": [{"smiles": s, "valid": c.valid, "issue": c.issue, "detail": c.detail, "rmsd_A": r,
                          "tokens": g["tokens"]}
                         for s, c, r, g in zip(data.smiles, checks, per_generation, generations)],
    }


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
    print(json.dumps({k: v for k, v in facts["evaluation"].items() if k != "per_molecule"}, indent=2))


if __name__ == "__main__":
    main()
