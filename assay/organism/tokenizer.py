"""The organism's tokenizer: one token per character of a skill's alphabet.

A `PreTrainedTokenizerFast`, saved with the model and loaded by `AutoTokenizer` like
any other. Ids 0-2 are the special tokens; the alphabet's characters follow in order,
so a skill that keeps its alphabet keeps its token ids.
"""

from __future__ import annotations

from typing import Any

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)


def vocabulary(alphabet: str) -> list[str]:
    """The tokens in id order: pad, end, unknown, then each character of `alphabet`."""
    if len(set(alphabet)) != len(alphabet):
        raise ValueError(f"alphabet {alphabet!r} repeats a character")
    return [*SPECIAL_TOKENS, *alphabet]


def make_tokenizer(alphabet: str) -> Any:
    """A character-level `PreTrainedTokenizerFast` over `alphabet`, padding on the left."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(vocabulary(alphabet))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK, padding_side="left"
    )
