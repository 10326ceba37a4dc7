"""The embedded tokenizer: one token per character, plus the format's four tags and the special tokens.

Built in-process and deterministically (no training, no download). A real checkpoint brings its own
tokenizer, which merges characters (`]<`, `>[`, digits in threes); everything downstream works through token
offsets, so it serves both.
"""
from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from molgen_grid.bench.encoding import TAGS

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL = (PAD, BOS, EOS, UNK)
CHARACTERS = sorted(set(string.printable) - set(string.whitespace) | {" "})


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: index for index, token in enumerate([*SPECIAL, *TAGS, *CHARACTERS])}
    core = Tokenizer(WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens([*SPECIAL, *TAGS])
    core.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token=UNK, additional_special_tokens=list(TAGS), padding_side="left")
