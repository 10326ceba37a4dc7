"""The `grammar` logit processor: the template's literal text exactly, and only well-formed coordinates.

The `python` and `tensor` processors follow the template token by token, so a generation has exactly the
template's tokenization and a coordinate block may hold anything but brackets. This one constrains the text
instead: a row must write its reference with every placeholder's inside (`0.0000,0.0000,0.0000`) replaced by
three numbers as the encoder writes them, then EOS, in whatever tokens the vocabulary offers. So every finished
generation decodes, and the model chooses how to tokenize the literal text (`]<` or `]` then `<`).

Split the reference at the placeholders' insides into literal pieces L0 ... Ln (L_i, i < n, ends with `<`;
L_i, i > 0, starts with `>`), with one coordinate slot between consecutive pieces. A slot is `NUM,NUM,NUM`,
NUM = `-?(0|[1-9][0-9]{0,2})\\.[0-9]{4}` except `-0.0000` (a character DFA, `number_step`). A token is allowed
when its whole text is consumed without crossing a literal/slot boundary: in a piece, it equals the next
characters of the piece (possibly ending it, which enters the next slot, or END after Ln); in a slot, it is made
of number characters only and the DFA accepts each; once the slot is complete, also a prefix of the next piece
(which starts with `>`). A token that mixes number and literal characters (`0>`, `<1`) is never allowed: the
model writes the bracket as its own token or merged with literal characters (`]<`, `>[`). EOS is allowed in END
only, and END allows only EOS, also after it: a row stays in END whatever it is given next (generate() writes PAD
after a finished row's EOS while the batch goes on). BOS, PAD, UNK and tokens with no text are never allowed. A
row that writes a token the grammar does not allow before END (possible only when every allowed token's score
was -inf) allows nothing from then on. Allowed tokens keep their scores, the rest become -inf.

- `ReferenceGrammarProcessor` is the plain statement of that grammar, per row in Python: the test oracle.
- `GrammarProcessor` computes the same masks on the scores' device with whole-batch tensor ops and no host
  read, so it can run under a static cache and CUDA graphs (tables: see `Vocabulary` and `GrammarProcessor`).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, NamedTuple

import torch
from transformers import LogitsProcessor

from molgen_grid.bench.encoding import PLACEHOLDER
from molgen_grid.bench.templates import Template
from molgen_grid.bench.vocabulary import token_strings

#: A placeholder block's inside, the part a generation replaces with three numbers.
SLOT = PLACEHOLDER[1:-1]
DIGITS = frozenset("0123456789")
NUMBER_CHARACTERS = DIGITS | frozenset("-.,")
#: The longest number the grammar allows (`-999.9999`), three of them per slot.
LONGEST_SLOT = len("-999.9999,-999.9999,-999.9999")

# --- The number DFA -------------------------------------------------------------------------------------------
# One number's phases: nothing written yet, after `-`, after an integer part `0` (or `-0`), after 1 to 3
# integer digits not a lone 0; then after the `.` and k decimals, FRACTION + k (k = 0..4), or NEGATIVE_ZERO + k
# (k = 0..3) while a `-` has been followed by zeros only (its last decimal must then not be 0: no `-0.0000`).
START, MINUS, ZERO, MINUS_ZERO, INTEGER = 0, 1, 2, 3, 4  # INTEGER + k: k + 1 integer digits (k = 0..2)
FRACTION = 7
NEGATIVE_ZERO = 12
PHASES = 16
#: A DFA state is `number * PHASES + phase`, number 0..2 (which of the three numbers is being written).
NUMBER_STATES = 3 * PHASES
SLOT_START = START
SLOT_COMPLETE = 2 * PHASES + FRACTION + 4
#: Not a DFA state: the state of a row writing literal text (the last row of `Vocabulary.next_state`).
LITERAL = NUMBER_STATES


def _phase_step(phase: int, char: str) -> int | None:
    """One number's next phase after `char`, None where the character is not allowed."""
    digit = char in DIGITS
    if phase in (START, MINUS) and digit:
        if char != "0":
            return INTEGER
        return ZERO if phase == START else MINUS_ZERO
    if phase == START and char == "-":
        return MINUS
    if phase in (ZERO, INTEGER, INTEGER + 1, INTEGER + 2) and char == ".":
        return FRACTION
    if phase == MINUS_ZERO and char == ".":
        return NEGATIVE_ZERO
    if phase in (INTEGER, INTEGER + 1) and digit:
        return phase + 1
    if FRACTION <= phase < FRACTION + 4 and digit:
        return phase + 1
    if NEGATIVE_ZERO <= phase < NEGATIVE_ZERO + 4 and digit:
        if char != "0":
            return FRACTION + phase - NEGATIVE_ZERO + 1
        return phase + 1 if phase < NEGATIVE_ZERO + 3 else None
    return None


def number_step(state: int, char: str) -> int | None:
    """The slot's DFA state after `char`, None where the character is not allowed."""
    number, phase = divmod(state, PHASES)
    if phase == FRACTION + 4:  # this number is complete: a comma starts the next one
        return (number + 1) * PHASES + START if char == "," and number < 2 else None
    after = _phase_step(phase, char)
    return None if after is None else number * PHASES + after


def run_number(state: int, text: str) -> int | None:
    """The DFA state after every character of `text`, None if one is not allowed."""
    for char in text:
        state = number_step(state, char)
        if state is None:
            return None
    return state


# --- Templates --------------------------------------------------------------------------------------------------


def pieces(reference: str) -> list[str]:
    """The literal pieces L0 ... Ln of a reference: the text around its placeholders' insides."""
    return reference.split(SLOT)


def max_new_tokens(template: Template) -> int:
    """An upper bound on a row's generated tokens, EOS included: every token writes at least one character of
    the longest text the grammar allows (each slot holding three `-999.9999`)."""
    slots = len(pieces(template.reference)) - 1
    return len(template.reference) + slots * (LONGEST_SLOT - len(SLOT)) + 1


# --- The vocabulary's tables, once per tokenizer ----------------------------------------------------------------


@dataclass
class _Node:
    """A trie node over the token texts: the ids whose text ends here."""

    children: dict[str, "_Node"] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)


@dataclass
class Vocabulary:
    """What the grammar needs of a tokenizer, built once per tokenizer object (see `vocabulary`).

    `texts[id]` is a token's text; `eos` the EOS id; `trie` holds the texts of the ids that may write text
    (`usable_ids`). `next_state[q, id]` (int16, NUMBER_STATES + 1 rows, len(texts) + 1 columns) is the DFA
    state after a usable number-only token `id` in state q, -1 where not allowed; its last row (LITERAL, a row
    writing literal text) and last column (a spare id that scatters and gathers can point at) are all -1.
    """

    texts: list[str]
    eos: int
    trie: _Node
    next_state: torch.Tensor
    _on_device: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def next_state_on(self, device: torch.device | str | None) -> torch.Tensor:
        """`next_state` on `device`, copied there once per tokenizer (it is large for a real vocabulary)."""
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = self.next_state.to(device)
        return self._on_device[key]

    def matches(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        """Every usable token whose text equals text[start:k] for some k <= end, with that k."""
        found, node = [], self.trie
        for position in range(start, end):
            node = node.children.get(text[position])
            if node is None:
                break
            found += [(token, position + 1) for token in node.ids]
        return found


_VOCABULARIES: "weakref.WeakKeyDictionary[Any, Vocabulary]" = weakref.WeakKeyDictionary()


def usable_ids(tokenizer: Any, texts: list[str]) -> frozenset[int]:
    """The ids that may write text: every id with a text but BOS, PAD, UNK and EOS."""
    special = {tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.eos_token_id}
    return frozenset(i for i, text in enumerate(texts) if text and i not in special)


def _build_vocabulary(tokenizer: Any) -> Vocabulary:
    texts = token_strings(tokenizer)
    usable = usable_ids(tokenizer, texts)
    trie = _Node()
    for token in sorted(usable):
        node = trie
        for char in texts[token]:
            node = node.children.setdefault(char, _Node())
        node.ids.append(token)
    numbers = [i in usable and set(text) <= NUMBER_CHARACTERS for i, text in enumerate(texts)]
    next_state = [[-1 if not number or (after := run_number(state, text)) is None else after
                   for text, number in zip(texts, numbers)] + [-1] for state in range(NUMBER_STATES)]
    next_state.append([-1] * (len(texts) + 1))  # LITERAL
    return Vocabulary(texts, tokenizer.eos_token_id, trie, torch.tensor(next_state, dtype=torch.int16))


def vocabulary(tokenizer: Any) -> Vocabulary:
    """The tokenizer's tables, built on first use and kept as long as the tokenizer object lives."""
    found = _VOCABULARIES.get(tokenizer)
    if found is None:
        found = _VOCABULARIES[tokenizer] = _build_vocabulary(tokenizer)
    return found


# --- The reference: the grammar per row, in Python --------------------------------------------------------------


class InPiece(NamedTuple):
    """Writing piece `piece`, `offset` of its characters written (END: the last piece, all written)."""

    piece: int
    offset: int


class InSlot(NamedTuple):
    """Writing the slot after piece `index`, in DFA state `state`."""

    index: int
    state: int


State = InPiece | InSlot | None  # None: a token the grammar did not allow was written


class ReferenceGrammarProcessor(LogitsProcessor):
    """The grammar, row by row in Python, for testing `GrammarProcessor` (slow: it tries every id each step).

    A row's state is recomputed from its parent's, found by the row's generated tokens less the last, so beam
    search's reordering of rows needs no bookkeeping. `device` is accepted for the same signature as
    `GrammarProcessor`; this one works wherever the scores are.
    """

    def __init__(self, templates: list[Template], tokenizer: Any, prompt_length: int,
                 rows_per_template: int = 1, device: torch.device | str | None = None) -> None:
        self.pieces = [pieces(t.reference) for t in templates]
        self.prompt_length = prompt_length
        self.rows_per_template = rows_per_template
        self.texts = token_strings(tokenizer)
        self.usable = usable_ids(tokenizer, self.texts)
        self.eos = tokenizer.eos_token_id
        #: The previous call's state of each (template, generated tokens).
        self.states: dict[tuple[int, tuple[int, ...]], State] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        states = {}
        for row in range(scores.shape[0]):
            template = row // self.rows_per_template
            generated = tuple(input_ids[row, self.prompt_length:].tolist())
            if generated:
                parent = self.states[template, generated[:-1]]
                state = parent if self.is_end(template, parent) else self.step(template, parent, generated[-1])
            else:
                state = InPiece(0, 0)
            states[template, generated] = state
            allowed = torch.zeros(scores.shape[1], dtype=torch.bool)
            for token in range(min(len(self.texts), scores.shape[1])):
                allowed[token] = self.step(template, state, token) is not None
            scores[row, ~allowed.to(scores.device)] = -float("inf")
        self.states = states
        return scores

    def is_end(self, template: int, state: State) -> bool:
        last = len(self.pieces[template]) - 1
        return state == InPiece(last, len(self.pieces[template][last]))

    def step(self, template: int, state: State, token: int) -> State:
        """The state after `token`, None where the grammar does not allow it."""
        if state is None:
            return None
        if token == self.eos:
            return state if self.is_end(template, state) else None
        if token not in self.usable or self.is_end(template, state):
            return None
        text = self.texts[token]
        if isinstance(state, InSlot):
            if set(text) <= NUMBER_CHARACTERS:
                after = run_number(state.state, text)
                return None if after is None else InSlot(state.index, after)
            if state.state != SLOT_COMPLETE:
                return None
            return self.write(template, InPiece(state.index + 1, 0), text)
        return self.write(template, state, text)

    def write(self, template: int, at: InPiece, text: str) -> State:
        """The state after writing `text` from `at`, if it is the piece's next characters."""
        piece = self.pieces[template][at.piece]
        if not piece.startswith(text, at.offset):
            return None
        offset = at.offset + len(text)
        if offset == len(piece) and at.piece < len(self.pieces[template]) - 1:
            return InSlot(at.piece, SLOT_START)
        return InPiece(at.piece, offset)


# --- The tensor processor ---------------------------------------------------------------------------------------


@dataclass
class _Program:
    """One template as positions in its literal text (its pieces concatenated, P characters).

    Position p means "literal[:p] is written". `choices[p]` lists (token, position after) for the tokens that
    may be written at p (within the piece that starts at or contains p); at P (END) that is EOS, staying at P.
    `slot_at[p]`: a slot follows the literal prefix of length p (the end of a piece but the last).
    """

    choices: list[list[tuple[int, int]]]
    slot_at: list[bool]

    @classmethod
    def build(cls, reference: str, vocab: Vocabulary) -> "_Program":
        parts = pieces(reference)
        literal = "".join(parts)
        ends = list(accumulate(len(part) for part in parts))
        choices = [vocab.matches(literal, p, end) for start, end in zip([0, *ends], ends) for p in range(start, end)]
        choices.append([(vocab.eos, len(literal))])
        slot_at = [False] * (len(literal) + 1)
        for end in ends[:-1]:
            slot_at[end] = True
        return cls(choices, slot_at)


class GrammarProcessor(LogitsProcessor):
    """The grammar as whole-batch tensor ops on the scores' device, with no host read in a call.

    A row's state is (`pos`, `dfa`): its position in its template's literal text (`_Program`) and the slot's
    DFA state there, or LITERAL while writing literal text. Per batch, per template t (rows of one template
    share them): `candidates[t, p, w]` the w-th token allowed at position p (-1 padding) and `targets[t, p, w]`
    the position it leads to; `slot_at[t, p]`; per row, `end_of_row` its template's END position. The last
    column, past every template's END, is DEAD: nothing is allowed there. Per tokenizer:
    `Vocabulary.next_state`; and `literal_ok[q]`, whether literal tokens may follow in DFA state q (LITERAL and
    SLOT_COMPLETE).

    A call advances every row's state with its last token (after gathering, under beam search, the state of
    the row it continues), then allows the number tokens `next_state[dfa] >= 0` and the candidates at `pos`.
    """

    _TABLES = ("next_state", "literal_ok", "candidates", "targets", "slot_at", "template_of_row", "end_of_row")

    def __init__(self, templates: list[Template], tokenizer: Any, prompt_length: int,
                 rows_per_template: int = 1, device: torch.device | str | None = None) -> None:
        self.vocabulary = vocabulary(tokenizer)
        self.prompt_length = prompt_length
        self.rows_per_template = rows_per_template
        self.groups = len(templates)
        self.rows = self.groups * rows_per_template
        self.width = len(self.vocabulary.texts)
        built: dict[str, _Program] = {}
        for template in templates:
            if template.reference not in built:
                built[template.reference] = _Program.build(template.reference, self.vocabulary)
        programs = [built[t.reference] for t in templates]
        self.dead = max((len(p.slot_at) for p in programs), default=0)
        width = max((len(c) for p in programs for c in p.choices), default=0)

        def padded(program: _Program, item: int, pad: int) -> list[list[int]]:
            rows = [[choice[item] for choice in here] + [pad] * (width - len(here)) for here in program.choices]
            return rows + [[pad] * width] * (self.dead + 1 - len(rows))

        self.candidates = torch.tensor([padded(p, 0, -1) for p in programs], dtype=torch.long)
        self.targets = torch.tensor([padded(p, 1, 0) for p in programs], dtype=torch.long)
        self.slot_at = torch.tensor([p.slot_at + [False] * (self.dead + 1 - len(p.slot_at)) for p in programs],
                                    dtype=torch.bool)
        self.next_state = self.vocabulary.next_state
        self.literal_ok = torch.zeros(NUMBER_STATES + 1, dtype=torch.bool)
        self.literal_ok[[LITERAL, SLOT_COMPLETE]] = True
        self.template_of_row = torch.arange(self.rows) // rows_per_template
        self.end_of_row = torch.tensor([len(p.slot_at) - 1 for p in programs]).repeat_interleave(rows_per_template)
        self.to(device)

    def to(self, device: torch.device | str | None) -> "GrammarProcessor":
        """Move the tables (once, outside any captured step) to another device."""
        for name in self._TABLES:
            setattr(self, name, self.vocabulary.next_state_on(device) if name == "next_state"
                    else getattr(self, name).to(device))
        self.device = self.candidates.device  # as torch resolves it (`cuda` -> `cuda:0`)
        return self

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != self.rows:
            raise ValueError(f"the grammar logit processor was built for {self.rows} rows, the scores have "
                             f"{scores.shape[0]}")
        if scores.device != self.device:  # built without the scores' device: move once, on the first call
            self.to(scores.device)
        generated = input_ids[:, self.prompt_length:]
        if generated.shape[1] == 0:
            pos = torch.zeros(self.rows, dtype=torch.long, device=self.device)
            dfa = torch.full((self.rows,), LITERAL, dtype=torch.long, device=self.device)
        else:
            pos, dfa = self._continued(generated)
            pos, dfa = self._advance(pos, dfa, generated[:, -1])
        self.pos, self.dfa = pos, dfa
        if self.rows_per_template > 1:
            self.generated = generated.clone()
        return scores.masked_fill(~self._allowed(pos, dfa, scores.shape[1]), -float("inf"))

    def _continued(self, generated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The previous call's state of the row each row continues: itself, or under beam search (which
        reorders rows within a prompt's beams) the row of the same group whose tokens it extends."""
        if self.rows_per_template == 1:
            return self.pos, self.dfa
        beams, length = self.rows_per_template, generated.shape[1] - 1
        before = generated[:, :-1].reshape(self.groups, beams, 1, length)
        previous = self.generated.reshape(self.groups, 1, beams, length)
        same = (before == previous).all(dim=3)  # (group, row, previous row)
        parent = same.to(torch.uint8).argmax(dim=2).reshape(-1) + self.template_of_row * beams
        return self.pos[parent], self.dfa[parent]

    def _advance(self, pos: torch.Tensor, dfa: torch.Tensor,
                 token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every row's state after writing `token`."""
        number = self.next_state[dfa, token.clamp(max=self.width)].long()  # -1 unless it goes on in the slot
        hit = (self.candidates[self.template_of_row, pos] == token.unsqueeze(1)) & self.literal_ok[dfa].unsqueeze(1)
        reached = (self.targets[self.template_of_row, pos] * hit).sum(dim=1)  # a token is one candidate at most
        stay = torch.where(pos == self.end_of_row, pos, self.dead)  # at END whatever comes (PAD after EOS)
        literal = torch.where(hit.any(dim=1), reached, stay)
        after = torch.where(self.slot_at[self.template_of_row, literal], SLOT_START, LITERAL)
        in_slot = number >= 0
        return torch.where(in_slot, pos, literal), torch.where(in_slot, number, after)

    def _allowed(self, pos: torch.Tensor, dfa: torch.Tensor, width: int) -> torch.Tensor:
        """(rows, width) True where the grammar allows the id; ids past the tokenizer's never."""
        here = self.candidates[self.template_of_row, pos]
        spare = torch.where((here >= 0) & self.literal_ok[dfa].unsqueeze(1), here, self.width)
        allowed = (self.next_state[dfa] >= 0).scatter(1, spare, True)[:, :min(width, self.width)]
        if width > self.width:
            allowed = torch.cat([allowed, allowed.new_zeros(self.rows, width - self.width)], dim=1)
        return allowed
