"""The `decoding` axis: plain generate(), assisted by a draft model, or prompt lookup; and what each call drafted.

transformers drafts tokens with a small model sharing the model's vocabulary (`assistant_model`) or with the
row's own earlier n-grams (`prompt_lookup_num_tokens`), and the model checks a round's draft in one forward.
Four of its habits shape this module:

- The draft settings are read from the *draft's* generation config (`num_assistant_tokens`, the schedule, the
  confidence threshold), and the `heuristic` schedule writes the draft length it reached back there after each
  call, so one pass would tune the next: `reset()` puts the configured values back before every pass (and
  warm-up round), so each starts from the same draft state; calls within a pass keep the library's behaviour.
- generate() does not say how many drafted tokens the model accepted: `DraftProbe` wraps the candidate
  generator generate() builds and counts the tokens it drafted and the matches it was told of, and the tokens
  the confidence threshold stopped: a round that drafted fewer than the generator's own `_calculate_new_tokens`
  allowed, and did not end on EOS, was ended by the draft's `ConfidenceCriteria` (the only other criterion the
  draft's generate() runs is its length). Without scikit-learn the threshold stays as configured; with it,
  transformers tunes it from the matches, and `applied()` reports where it ended.
- It refuses a batch of several rows (a ValueError), and with beam search it logs a warning and runs beam
  search without the draft (its `get_generation_mode` says so beforehand): both end the cell `unsupported`,
  never timed as another method. A logit processor that keeps one state per step (grammar) cannot score
  several drafted positions in one call, as verification needs: refused before anything runs.
- A draft needs the model's vocabulary (else the library wants two tokenizers): checked when it loads.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from transformers import GenerationConfig
from transformers.generation.configuration_utils import GenerationMode

from molgen_grid.bench.attention import Unsupported
from molgen_grid.bench.model import EMBEDDED, from_checkpoint
from molgen_grid.errors import InputError

#: `decoding.kind` values (conf/decoding/).
KINDS = ("standard", "assisted", "prompt_lookup")
#: The embedded draft (scripts/train_embedded.py --draft).
EMBEDDED_DRAFT = EMBEDDED / "draft"


def draft_directory(decoding_cfg: Any) -> Path:
    """The draft's checkpoint: `decoding.draft_path`, or the embedded draft when null."""
    path = decoding_cfg.get("draft_path")
    return EMBEDDED_DRAFT if path is None else Path(str(path)).expanduser()


@dataclass
class DraftCounts:
    """One generate() call's drafting: tokens drafted, drafted tokens accepted, tokens the confidence threshold
    kept the draft from proposing."""

    drafted: int = 0
    accepted: int = 0
    stopped: int = 0


class DraftProbe:
    """Wraps each candidate generator generate() builds, counting its drafts and accepted tokens."""

    def __init__(self, model: Any) -> None:
        self.counts = DraftCounts()
        self.last: Any = None
        #: The draft length each candidate generator of the pass started from (read from it).
        self.starts: list[int] = []
        build: Callable[..., Any] = model._get_candidate_generator

        def watched(*args: Any, **kwargs: Any) -> Any:
            candidates = build(*args, **kwargs)
            self.watch(candidates)
            return candidates

        model._get_candidate_generator = watched

    def watch(self, candidates: Any) -> None:
        get, update, counts = candidates.get_candidates, candidates.update_candidate_strategy, self.counts
        self.last = candidates
        self.starts.append(int(getattr(candidates, "num_assistant_tokens", None)
                               or getattr(candidates, "num_output_tokens")))

        def get_candidates(input_ids: torch.LongTensor, *args: Any, **kwargs: Any) -> Any:
            allowed = allowed_tokens(candidates, input_ids)
            ids, logits = get(input_ids, *args, **kwargs)
            drafted = ids.shape[1] - input_ids.shape[1]
            counts.drafted += drafted
            if allowed is not None and drafted < allowed and int(ids[0, -1]) not in eos_ids(candidates):
                counts.stopped += allowed - drafted
            return ids, logits

        def update_candidate_strategy(input_ids: torch.LongTensor, scores: torch.Tensor, num_matches: int) -> Any:
            counts.accepted += int(num_matches)
            return update(input_ids, scores, num_matches)

        candidates.get_candidates = get_candidates
        candidates.update_candidate_strategy = update_candidate_strategy

    def take(self) -> DraftCounts:
        """The counts since the last take, and a fresh count for the next call."""
        taken, self.counts = self.counts, DraftCounts()
        return taken


def allowed_tokens(candidates: Any, input_ids: torch.LongTensor) -> int | None:
    """The tokens a draft model's round may propose, as its candidate generator computes them; None where no
    confidence threshold can stop the round (prompt lookup, threshold 0)."""
    if not getattr(candidates, "assistant_confidence_threshold", None):
        return None
    return int(candidates._calculate_new_tokens(input_ids)[1])


def eos_ids(candidates: Any) -> set[int]:
    eos = candidates.assistant_generation_config.eos_token_id
    return set() if eos is None else {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


class Decoding:
    """One cell's decoding option: generate()'s arguments, the draft's state, the refusals and the read-back."""

    def __init__(self, decoding_cfg: Any, model: Any, attention_cfg: Any, processor_kind: str,
                 generate_kwargs: dict[str, Any]) -> None:
        self.kind = str(decoding_cfg.kind)
        if self.kind not in KINDS:
            raise InputError(f"decoding.kind {self.kind!r} is unknown: use one of {', '.join(KINDS)}")
        self.cfg = decoding_cfg
        self.draft = load_draft(decoding_cfg, model, attention_cfg) if self.kind == "assisted" else None
        self.probe = DraftProbe(model) if self.kind != "standard" else None
        self.reached: list[int] = []
        if self.probe is not None and processor_kind == "grammar":
            raise Unsupported(f"{self.kind} decoding: the grammar logit processor keeps one state per step and "
                              "cannot score several drafted positions in one call, as verifying a draft needs")
        if self.probe is not None:
            drafting = {k: v for k, v in self.kwargs().items() if k != "assistant_model"}
            mode = GenerationConfig(**generate_kwargs, **drafting).get_generation_mode(self.draft)
            if mode != GenerationMode.ASSISTED_GENERATION:
                raise Unsupported(f"{self.kind} decoding: transformers would run {mode.value} without the draft "
                                  "(it assists greedy search and sampling only)")

    def reset(self) -> None:
        """The configured draft state, before a pass: what the heuristic schedule learnt is forgotten."""
        self.reached = []
        if self.probe is not None:
            self.probe.starts = []
        if self.draft is not None:
            config = self.draft.generation_config
            config.num_assistant_tokens = int(self.cfg.draft_tokens)
            config.num_assistant_tokens_schedule = str(self.cfg.schedule)
            config.assistant_confidence_threshold = float(self.cfg.confidence_threshold)

    def kwargs(self) -> dict[str, Any]:
        """generate()'s arguments for this option."""
        if self.kind == "assisted":
            return {"assistant_model": self.draft}
        if self.kind == "prompt_lookup":
            return {"prompt_lookup_num_tokens": int(self.cfg.draft_tokens),
                    "max_matching_ngram_size": int(self.cfg.max_matching_ngram)}
        return {}

    @contextlib.contextmanager
    def refusals(self) -> Iterator[None]:
        """Around one generate() call: the library's refusal of this option ends the cell unsupported."""
        try:
            yield
        except ValueError as exc:
            if self.probe is None:
                raise
            raise Unsupported(f"{self.kind} decoding: {str(exc).strip().splitlines()[0]}") from exc

    def counted(self) -> DraftCounts | None:
        """After a call: its drafting (None for standard decoding)."""
        if self.probe is None:
            return None
        counts = self.probe.take()
        if self.draft is not None:
            self.reached.append(int(self.probe.last.num_assistant_tokens))  # where this call's schedule ended
        return counts

    def applied(self) -> dict[str, Any]:
        """What drafted, read back from the candidate generator of the last call and the draft model."""
        if self.probe is None:
            return {"kind": self.kind, "candidate_generator": None}
        last = self.probe.last
        config = getattr(last, "assistant_generation_config", None)
        out: dict[str, Any] = {"kind": self.kind, "candidate_generator": type(last).__name__,
                               "draft_tokens_at_start": self.probe.starts}
        if self.kind == "prompt_lookup":
            out["max_matching_ngram"] = last.max_matching_ngram_size
        if config is not None:
            out.update({"schedule": config.num_assistant_tokens_schedule,
                        "confidence_threshold": config.assistant_confidence_threshold,
                        "draft_tokens_reached": self.reached,
                        "draft_parameters": sum(p.numel() for p in self.draft.parameters()),
                        "draft_layers": self.draft.config.num_hidden_layers,
                        "draft_attention": self.draft.config._attn_implementation})
        return out


def load_draft(decoding_cfg: Any, model: Any, attention_cfg: Any) -> Any:
    """The draft model on the model's device and dtype, with its attention; it must share the vocabulary."""
    directory = draft_directory(decoding_cfg)
    if not (directory / "config.json").is_file():
        raise InputError(f"decoding.draft_path {directory} holds no config.json: point it at a Hugging Face "
                         "checkpoint (or null for the embedded draft)")
    draft = from_checkpoint(directory, attention_cfg, model.device, model.dtype)
    ours, theirs = model.config.get_text_config().vocab_size, draft.config.get_text_config().vocab_size
    if ours != theirs:
        raise InputError(f"decoding.draft_path {directory} has a vocabulary of {theirs} tokens, the model {ours}: "
                         "a draft must share the model's tokenizer")
    return draft
