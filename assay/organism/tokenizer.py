"""The organism's tokenizer: one token per character of a skill's alphabet.

Saved with the model and loaded by `AutoTokenizer` like any other. Ids 0-2 are the
special tokens; the alphabet's characters follow in order, so a skill that keeps its
alphabet keeps its token ids. A prior is built with `native_tokenizer` (no transformers:
the same files, byte for byte, as transformers saves from `make_tokenizer`'s
`PreTrainedTokenizerFast` once it has padded a batch, as every prior's evaluation does;
tests/test_organism_build.py compares them).
"""

from __future__ import annotations

import json
from typing import Any

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)


def vocabulary(alphabet: str) -> list[str]:
    """The tokens in id order: pad, end, unknown, then each character of `alphabet`."""
    if len(set(alphabet)) != len(alphabet):
        raise ValueError(f"alphabet {alphabet!r} repeats a character")
    return [*SPECIAL_TOKENS, *alphabet]


def _character_core(alphabet: str) -> Any:
    """The `tokenizers.Tokenizer` both tokenizers wrap: a token per character of the
    vocabulary, unknown characters as `<unk>`, decoded by joining."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate(vocabulary(alphabet))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return core


def make_tokenizer(alphabet: str) -> Any:
    """A character-level `PreTrainedTokenizerFast` over `alphabet`, padding on the left."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=_character_core(alphabet), pad_token=PAD, eos_token=EOS, unk_token=UNK,
        padding_side="left",
    )


#: tokenizer_config.json as transformers writes it for `make_tokenizer`'s tokenizer
#: (its `model_max_length` is transformers' "no limit", int(1e30))
TOKENIZER_CONFIG = {
    "backend": "tokenizers",
    "eos_token": EOS,
    "model_max_length": int(1e30),
    "pad_token": PAD,
    "padding_side": "left",
    "tokenizer_class": "TokenizersBackend",
    "unk_token": UNK,
}


def native_tokenizer(alphabet: str) -> Any:
    """`make_tokenizer(alphabet)` without transformers: a `NativeTokenizer` whose files are
    those transformers would save of it after a padded call (left padding on)."""
    from tokenizers import AddedToken, processors

    from assay.native_llama import NativeTokenizer

    # what `PreTrainedTokenizerFast` adds to the core, and its padded call leaves set
    core = _character_core(alphabet)
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    core.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B:1", special_tokens=[])
    core.enable_padding(direction="left", pad_id=core.token_to_id(PAD), pad_token=PAD)
    config = json.dumps(TOKENIZER_CONFIG, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    files = {"tokenizer.json": core.to_str(pretty=True).encode("utf-8"),
             "tokenizer_config.json": config.encode("utf-8")}
    return NativeTokenizer(files, TOKENIZER_CONFIG)
