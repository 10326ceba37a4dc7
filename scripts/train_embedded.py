"""Train the embedded tiny Llama on conformers that ship with RDKit, deterministically, on 2 CPU cores.

Why: the benchmark's default model should run trained weights that nobody has to download, made by a
command anyone can rerun. This script makes the shipped checkpoint in under 30 minutes here (what it reaches,
the format but not yet chemistry, is in docs/model-card.md):

    PYTHONPATH=. .venv/bin/python scripts/train_embedded.py [--seed 0] [--minutes 25] [--out DIR] [--quick]
    PYTHONPATH=. .venv/bin/python scripts/train_embedded.py --draft [--minutes 12]

The architecture is conf/model/tiny.yaml `embedded:` with the character tokenizer, built exactly as
molgen_grid.bench.model builds it. `--draft` trains the draft model of assisted decoding instead (tiny.yaml
`draft:`, the same tokenizer, corpus and recipe, fewer layers and a narrower width) into embedded_model/draft/:
a draft must share the model's vocabulary, and pays off only when it costs far less than the model per token.
Determinism: the step count comes from `--minutes` through a measured rate (never the wall clock), the corpus
and the batch order depend only on `--seed`, torch runs a fixed number of threads with deterministic
algorithms, and there are no data-loader workers. Same seed and threads on the same machine, same bytes of
model.safetensors.

Writes OUT (default molgen_grid/bench/embedded_model): config.json, generation_config.json,
model.safetensors (float32), the tokenizer files and training.json (the model card's facts, the held-out
evaluation included); and the loss curve PNG (docs/embedded-model-loss.png for the default OUT).
"""
from __future__ import annotations

import os

# The machine is shared: OpenMP threads that spin while they wait run 5-10x slower beside another busy process;
# passive waiting costs about 12% on an idle machine. Set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import platform
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import matplotlib
import rdkit
import torch
import transformers
import yaml
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))

import embedded_corpus
import evaluate_embedded
from molgen_grid.bench.tokenizer import build_tokenizer

ROOT = Path(__file__).resolve().parent.parent
MODEL_CONFIG = ROOT / "conf" / "model" / "tiny.yaml"
#: One optimizer step of the full plan, validation included, at 2 threads: 1.02 s measured over 1,462 steps on
#: this machine shared with other work (load average about 3.5); about 0.45 s idle (estimated). Steps come from
#: this figure, never from a clock.
SECONDS_PER_STEP = 1.0
#: The rest, measured with the machine shared: corpus 87 s (ETKDG + MMFF in 2 processes), held-out evaluation
#: 72 s, loading, saving and final losses about 30 s; with a margin.
OVERHEAD_SECONDS = 300


@dataclass(frozen=True)
class Plan:
    steps: int
    #: Padded tokens per batch at most (rows x longest row).
    tokens_per_batch: int
    peak_lr: float
    warmup_steps: int
    #: Cosine decay from the peak to this fraction of it.
    final_lr_fraction: float
    weight_decay: float
    grad_clip: float
    validation_points: int
    conformers_per_smiles: int
    mmff: bool
    #: Molecules per source (--quick only); None: all.
    molecules_per_source: int | None
    #: Held-out molecules generated at the end (None: all) and their token limit.
    evaluation_molecules: int | None
    evaluation_max_new_tokens: int


@dataclass(frozen=True)
class Role:
    """Which of the two embedded checkpoints a run trains: its tiny.yaml section, folder, plot and step rate."""

    settings_key: str
    out: Path
    plot: Path
    seconds_per_step: float
    flag: str


TARGET = Role("embedded", ROOT / "molgen_grid" / "bench" / "embedded_model", ROOT / "docs" / "embedded-model-loss.png",
              SECONDS_PER_STEP, "")
#: The draft's step, measured like the target's (2 threads, machine shared): see docs/model-card.md.
DRAFT = Role("draft", TARGET.out / "draft", ROOT / "docs" / "embedded-draft-loss.png", 0.25, "--draft ")


def full_plan(minutes: float, seconds_per_step: float = SECONDS_PER_STEP) -> Plan:
    """The real run: as many steps as `minutes` holds at the measured rate, after the fixed overhead."""
    steps = int((minutes * 60 - OVERHEAD_SECONDS) / seconds_per_step)
    if steps < 100:
        raise SystemExit(f"--minutes {minutes} leaves {steps} steps after the corpus and evaluation: give more")
    return Plan(steps=steps, tokens_per_batch=4096, peak_lr=1e-3, warmup_steps=min(200, steps // 10),
                final_lr_fraction=0.1, weight_decay=0.1, grad_clip=1.0, validation_points=10,
                conformers_per_smiles=1, mmff=True, molecules_per_source=None, evaluation_molecules=None,
                evaluation_max_new_tokens=evaluate_embedded.MAX_NEW_TOKENS)


def quick_plan() -> Plan:
    """A few steps on a handful of small molecules, for tests: seconds, the same code path."""
    return Plan(steps=2, tokens_per_batch=512, peak_lr=2e-3, warmup_steps=1, final_lr_fraction=0.1,
                weight_decay=0.1, grad_clip=1.0, validation_points=1, conformers_per_smiles=1, mmff=True,
                molecules_per_source=2, evaluation_molecules=2, evaluation_max_new_tokens=16)


def embedded_settings(key: str = TARGET.settings_key) -> dict[str, Any]:
    return yaml.safe_load(MODEL_CONFIG.read_text())[key]


def build_model(tokenizer: Any, seed: int, key: str = TARGET.settings_key) -> LlamaForCausalLM:
    """A tiny Llama of tiny.yaml (`key`: embedded or draft), initialised from `seed`."""
    params = {k: v for k, v in embedded_settings(key).items() if k != "seed"}
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=True, **params)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def quick_selection(selection: embedded_corpus.Selection, per_source: int) -> embedded_corpus.Selection:
    """The `per_source` smallest training molecules of each source and the smallest validation molecule of all
    (the shortest texts: a step's cost, and each validation's, grows with their length)."""
    chosen, taken = [], {}
    for molecule in sorted(selection.molecules, key=lambda m: len(m.smiles)):
        side = embedded_corpus.is_validation(molecule.smiles)
        key = "validation" if side else molecule.source
        if taken.get(key, 0) < (1 if side else per_source):
            taken[key] = taken.get(key, 0) + 1
            chosen.append(molecule)
    return embedded_corpus.Selection(chosen, selection.counts)


def tokenize(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """BOS (from the tokenizer), the text, EOS: what the model sees in training and writes at inference."""
    return [ids + [tokenizer.eos_token_id] for ids in tokenizer(texts)["input_ids"]]


def pack(indices: list[int], lengths: list[int], tokens_per_batch: int) -> list[list[int]]:
    """Consecutive runs of `indices` (sorted longest first) holding at most `tokens_per_batch` padded tokens."""
    packed: list[list[int]] = []
    for index in indices:
        if packed and (len(packed[-1]) + 1) * lengths[packed[-1][0]] <= tokens_per_batch:
            packed[-1].append(index)
        else:
            packed.append([index])
    return packed


def batches(lengths: list[int], tokens_per_batch: int, rng: random.Random) -> Iterator[list[int]]:
    """Endless batches of row indices: each epoch shuffled, then sorted by length within windows of 256 rows
    (little padding) and packed, the batches shuffled again."""
    while True:
        order = list(range(len(lengths)))
        rng.shuffle(order)
        epoch: list[list[int]] = []
        for start in range(0, len(order), 256):
            window = sorted(order[start:start + 256], key=lambda i: lengths[i], reverse=True)
            epoch.extend(pack(window, lengths, tokens_per_batch))
        rng.shuffle(epoch)
        yield from epoch


def collate(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and labels (-100 on padding). No attention mask is needed: with right padding
    and causal attention no real token ever sees a pad, so SDPA keeps its causal fast path."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = torch.tensor(row)
        labels[r, :len(row)] = torch.tensor(row)
    return ids, labels


def mean_loss(model: LlamaForCausalLM, sequences: list[list[int]], pad: int, tokens_per_batch: int) -> float:
    """Token-weighted mean next-token loss over `sequences`, under the training's bfloat16 autocast."""
    lengths = [len(s) for s in sequences]
    total, count = 0.0, 0
    model.eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for batch in pack(sorted(range(len(sequences)), key=lambda i: -lengths[i]), lengths, tokens_per_batch):
            ids, labels = collate([sequences[i] for i in batch], pad)
            targets = int((labels[:, 1:] != -100).sum())
            total += model(input_ids=ids, labels=labels).loss.item() * targets
            count += targets
    model.train()
    return total / count


def lr_factor(plan: Plan) -> Any:
    """Linear warm-up to the peak, then cosine decay to `final_lr_fraction` of it."""
    def factor(step: int) -> float:
        if step < plan.warmup_steps:
            return (step + 1) / plan.warmup_steps
        progress = (step - plan.warmup_steps) / max(1, plan.steps - plan.warmup_steps)
        return plan.final_lr_fraction + (1 - plan.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def optimizer(model: LlamaForCausalLM, plan: Plan) -> torch.optim.AdamW:
    """AdamW; weight decay on the matrices only (not on the norms' gains)."""
    decayed = [p for p in model.parameters() if p.dim() >= 2]
    kept = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decayed, "weight_decay": plan.weight_decay},
                              {"params": kept, "weight_decay": 0.0}], lr=plan.peak_lr, betas=(0.9, 0.95))


def train(model: LlamaForCausalLM, train_ids: list[list[int]], validation_ids: list[list[int]], pad: int,
          plan: Plan, seed: int) -> dict[str, Any]:
    """The training loop; returns the curve and the counts of the run."""
    opt = optimizer(model, plan)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(plan))
    stream = batches([len(s) for s in train_ids], plan.tokens_per_batch, random.Random(seed))
    checkpoints = {round(plan.steps * k / plan.validation_points) for k in range(1, plan.validation_points + 1)}
    curve: dict[str, list] = {"train": [], "validation": [[0, mean_loss(model, validation_ids, pad,
                                                                        plan.tokens_per_batch)]]}
    real_tokens = padded_tokens = 0
    model.train()
    started = time.perf_counter()
    for step in range(1, plan.steps + 1):
        rows = [train_ids[i] for i in next(stream)]
        ids, labels = collate(rows, pad)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), plan.grad_clip)
        opt.step()
        schedule.step()
        opt.zero_grad(set_to_none=True)
        real_tokens += sum(map(len, rows))
        padded_tokens += ids.numel()
        curve["train"].append([step, loss.detach().item()])
        if step in checkpoints:
            curve["validation"].append([step, mean_loss(model, validation_ids, pad, plan.tokens_per_batch)])
            print(f"step {step}/{plan.steps}: train {curve['train'][-1][1]:.4f}, "
                  f"validation {curve['validation'][-1][1]:.4f}, {time.perf_counter() - started:.0f}s", flush=True)
    return {"curve": curve, "real_tokens": real_tokens, "padded_tokens": padded_tokens,
            "seconds": time.perf_counter() - started}


def plot(curve: dict[str, list], path: Path, title: str) -> None:
    """Train loss per step (and its 50-step mean) and validation loss against step."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    steps, losses = zip(*curve["train"])
    window = min(50, len(losses))
    smooth = [statistics.fmean(losses[max(0, i - window + 1):i + 1]) for i in range(len(losses))]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.7, label="train (per step)")
    ax.plot(steps, smooth, color="tab:blue", linewidth=1.6, label=f"train ({window}-step mean)")
    v_steps, v_losses = zip(*curve["validation"])
    ax.plot(v_steps, v_losses, "o-", color="tab:orange", linewidth=1.6, markersize=4, label="validation")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.1f"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.1f"))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("next-token loss (nats, log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def window_means(points: list[list[float]], window: int) -> list[list[float]]:
    """[last step, mean loss] of each run of `window` steps: the train curve, short enough for training.json."""
    return [[points[min(i + window, len(points)) - 1][0],
             sum(loss for _, loss in points[i:i + window]) / len(points[i:i + window])]
            for i in range(0, len(points), window)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="model, corpus and batch-order seed (default: 0)")
    parser.add_argument("--minutes", type=float, default=25.0,
                        help="time budget of the whole script, turned into a fixed step count (default: 25)")
    parser.add_argument("--draft", action="store_true",
                        help="train the draft model (tiny.yaml draft:) into embedded_model/draft/")
    parser.add_argument("--out", type=Path, default=None,
                        help="checkpoint directory (default: embedded_model/, or embedded_model/draft/ with --draft)")
    parser.add_argument("--plot", type=Path, default=None,
                        help=f"loss curve PNG (default: {TARGET.plot.relative_to(ROOT)} or "
                             f"{DRAFT.plot.relative_to(ROOT)} for the default --out, else OUT/loss.png)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads and ETKDG processes (default: 2)")
    parser.add_argument("--quick", action="store_true", help="a few steps on a handful of molecules (tests)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    role = DRAFT if args.draft else TARGET
    args.out = args.out or role.out
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    plan = quick_plan() if args.quick else full_plan(args.minutes, role.seconds_per_step)
    tokenizer = build_tokenizer()

    selection = embedded_corpus.select_molecules()
    if plan.molecules_per_source is not None:
        selection = quick_selection(selection, plan.molecules_per_source)
    corpus = embedded_corpus.build_corpus(selection, args.seed, plan.conformers_per_smiles, plan.mmff, args.threads)
    corpus_seconds = time.perf_counter() - started
    print(f"corpus: {len(corpus.train)} train and {len(corpus.validation)} validation texts in "
          f"{corpus_seconds:.0f}s", flush=True)
    train_ids, validation_ids = tokenize(tokenizer, corpus.train), tokenize(tokenizer, corpus.validation)

    model = build_model(tokenizer, args.seed, role.settings_key)
    run = train(model, train_ids, validation_ids, tokenizer.pad_token_id, plan, args.seed)
    train_sample = train_ids[::max(1, len(train_ids) // len(validation_ids))][:len(validation_ids)]
    final = {"train_loss": mean_loss(model, train_sample, tokenizer.pad_token_id, plan.tokens_per_batch),
             "validation_loss": mean_loss(model, validation_ids, tokenizer.pad_token_id, plan.tokens_per_batch)}
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)

    plot_path = args.plot or (role.plot if args.out.resolve() == role.out and not args.quick
                              else args.out / "loss.png")
    plot(run["curve"], plot_path, f"Embedded tiny Llama{' draft' if args.draft else ''}, seed {args.seed}: "
                                  f"{plan.steps} steps, "
                                  f"{run['real_tokens'] / 1e6:.1f}M tokens")
    evaluation = evaluate_embedded.evaluate(args.out, plan.evaluation_molecules, plan.evaluation_max_new_tokens,
                                            seed=args.seed)
    facts = card_facts(args, role, plan, model, corpus, selection, run, final, corpus_seconds, train_ids)
    facts["wall_seconds"] = time.perf_counter() - started
    facts["evaluation"] = evaluation
    (args.out / "training.json").write_text(json.dumps(facts, indent=2) + "\n")
    print(f"done in {facts['wall_seconds']:.0f}s: validation loss {final['validation_loss']:.4f}, "
          f"{evaluation['unconstrained']['quality']['valid']}/{evaluation['unconstrained']['quality']['generations']} "
          "valid unconstrained", flush=True)


def card_facts(args: argparse.Namespace, role: Role, plan: Plan, model: LlamaForCausalLM,
               corpus: embedded_corpus.Corpus,
               selection: embedded_corpus.Selection, run: dict[str, Any], final: dict[str, float],
               corpus_seconds: float, train_ids: list[list[int]]) -> dict[str, Any]:
    """training.json: everything the model card states, measured by this run."""
    return {
        "command": "PYTHONPATH=. .venv/bin/python scripts/train_embedded.py " + role.flag
                   + ("--quick" if args.quick else f"--seed {args.seed} --minutes {args.minutes:g}"),
        "seed": args.seed,
        "threads": args.threads,
        "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version()},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "rdkit": rdkit.__version__},
        "corpus": {
            "held_out": embedded_corpus.HELD_OUT,
            "held_out_molecules": len(embedded_corpus.load_molecules(embedded_corpus.HELD_OUT).smiles),
            "heavy_atoms": [embedded_corpus.MIN_HEAVY_ATOMS, embedded_corpus.MAX_HEAVY_ATOMS],
            "selection": selection.counts,
            "conformers": corpus.counts,
            "conformers_per_smiles": plan.conformers_per_smiles,
            "mmff": plan.mmff,
            "train_molecules": corpus.train_molecules,
            "validation_molecules": corpus.validation_molecules,
            "train_texts": len(corpus.train),
            "validation_texts": len(corpus.validation),
            "train_tokens": sum(map(len, train_ids)),
            "seconds": corpus_seconds,
        },
        "architecture": {**embedded_settings(role.settings_key), "vocab_size": model.config.vocab_size,
                         "tie_word_embeddings": True, "parameters": sum(p.numel() for p in model.parameters())},
        "training": {**asdict(plan), "precision": "bfloat16 autocast, float32 weights and optimizer state",
                     "optimizer": "AdamW, betas (0.9, 0.95)", "schedule": "linear warm-up, cosine decay",
                     "tokens_seen": run["real_tokens"], "padded_tokens": run["padded_tokens"],
                     "epochs": run["real_tokens"] / sum(map(len, train_ids)), "seconds": run["seconds"]},
        "final": final,
        "curve": {"train_10_step_means": window_means(run["curve"]["train"], 10),
                  "validation": run["curve"]["validation"]},
    }


if __name__ == "__main__":
    main()
