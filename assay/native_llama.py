"""A Llama model folder loaded without transformers: the organism's priors and runs.

Importing transformers' model and tokenizer classes costs a process about 3 s on a
2-core machine (they pull in `torch._dynamo` and `torch.distributed.tensor`): more than
the rest of a short `assay train` or `assay eval` on the organism to its first step, and
about a sixth of `make test`'s CPU time, whose tests started such a process 67 times
(2026-12-07). A folder that the plain pass (`plain_llama`) computes in full — a plain
`LlamaForCausalLM` with a `tokenizers` tokenizer, and a chat template, if any, in one
file of Jinja text (SmolLM2's) — needs none of it:

- `NativeLlama` holds the parameters under transformers' names and module layout, so
  `PlainLlama` reads them as it reads a transformers model's, and `save_pretrained`
  writes a folder transformers loads back (the same safetensors keys, the same config);
- `NativeTokenizer` is the folder's `tokenizers.Tokenizer` under the handful of
  methods assay calls, with transformers' own behaviour (tests/test_native_llama.py
  compares both on the same folder: token ids, decoded texts, logits, gradients, saved
  folders; tests/test_pretrained.py on SmolLM2's, its chat template's texts included);
- `NativeTokenizer.apply_chat_template` renders a chat template in a Jinja environment
  set up as transformers sets up its own (`_compiled`: the same sandbox, whitespace rules,
  filters and globals), with the tokenizer's special tokens as its variables.

`load_native(path)` gives None for any other folder, which transformers then loads.
"""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from assay.files import replace_file

#: config.json fields whose values the plain pass does not compute otherwise (anything
#: else of these names: transformers loads the folder)
_PLAIN_CONFIG = {
    "model_type": "llama",
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
    "attention_dropout": 0.0,
    "pretraining_tp": 1,
}
_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "chat_template.jinja")
#: special tokens transformers passes to a chat template (`special_tokens_map`), by name
_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                   "mask_token")
#: transformers' assistant-mask tag: a template that uses it needs transformers' extension
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


class NativeConfig:
    """config.json's fields as attributes (what `PlainLlama` and the rotary table read)."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.__dict__.update(fields)
        self.fields = dict(fields)
        if "hidden_size" not in fields:  # generation_config.json: its fields only
            return
        if getattr(self, "head_dim", None) is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if getattr(self, "num_key_value_heads", None) is None:
            self.num_key_value_heads = self.num_attention_heads

    @property
    def rope_theta(self) -> float:
        rope = self.fields.get("rope_parameters") or {}
        return float(rope.get("rope_theta", self.fields.get("rope_theta", 10000.0)))


class _Weight(nn.Module):
    """A module holding one weight, as `nn.Linear` (no bias), `nn.Embedding` and RMSNorm
    hold theirs: uninitialised here, since `load_native` fills it (an initialiser would
    draw from torch's global generator, and `nn.init` imports `torch._dynamo`)."""

    def __init__(self, *shape: int, padding_idx: int | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(*shape))
        self.padding_idx = padding_idx


class _Attention(nn.Module):
    def __init__(self, c: NativeConfig) -> None:
        super().__init__()
        q, kv = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
        self.q_proj = _Weight(q, c.hidden_size)
        self.k_proj = _Weight(kv, c.hidden_size)
        self.v_proj = _Weight(kv, c.hidden_size)
        self.o_proj = _Weight(c.hidden_size, q)


class _MLP(nn.Module):
    def __init__(self, c: NativeConfig) -> None:
        super().__init__()
        self.gate_proj = _Weight(c.intermediate_size, c.hidden_size)
        self.up_proj = _Weight(c.intermediate_size, c.hidden_size)
        self.down_proj = _Weight(c.hidden_size, c.intermediate_size)


class _Layer(nn.Module):
    def __init__(self, c: NativeConfig) -> None:
        super().__init__()
        self.self_attn = _Attention(c)
        self.mlp = _MLP(c)
        self.input_layernorm = _Weight(c.hidden_size)
        self.post_attention_layernorm = _Weight(c.hidden_size)


class _Rotary(nn.Module):
    """transformers' default rotary table: the same `inv_freq`, computed the same way."""

    def __init__(self, c: NativeConfig) -> None:
        super().__init__()
        self.attention_scaling = 1.0
        dim = c.head_dim
        inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).to(dtype=torch.float) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)


class _Decoder(nn.Module):
    def __init__(self, c: NativeConfig) -> None:
        super().__init__()
        self.embed_tokens = _Weight(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.layers = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))
        self.norm = _Weight(c.hidden_size)
        self.rotary_emb = _Rotary(c)


class NativeLlama(nn.Module):
    """`LlamaForCausalLM`'s parameters, names and layout, computed by the plain pass.

    `model(input_ids, attention_mask, position_ids)` gives an object with `.logits`, as
    transformers' does; the trainer calls the plain pass directly (`policy.forward`).
    """

    #: `plain_llama.plain_forward` reads this: the plain pass is this model's own pass,
    #: with nothing to check it against
    computed_by_plain_pass = True

    def __init__(self, config: NativeConfig, generation: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        self.model = _Decoder(config)
        self.generation_config = NativeConfig(generation) if generation else None
        self.tied = bool(config.fields.get("tie_word_embeddings", False))
        # a tied head is the embedding's weight itself, as in transformers
        self.lm_head = _Weight(0) if self.tied else _Weight(config.vocab_size, config.hidden_size)
        if self.tied:
            self.lm_head.weight = self.model.embed_tokens.weight

    def get_decoder(self) -> nn.Module:
        return self.model

    @torch.no_grad()
    def initialise(self) -> None:
        """Draw the parameters from torch's global generator as `LlamaForCausalLM(config)`
        draws them, draw for draw, so that a seed gives transformers' weights bit for bit
        (tests/test_organism_build.py): making the decoder (`nn.Embedding`'s N(0, 1), each
        `nn.Linear`'s Kaiming-uniform), then its initialisation (N(0, initializer_range),
        each module's children before it, norms at 1), then the head made and initialised
        after it. Tied, the head is then the embedding's weight: its draws are thrown away."""
        std = float(self.config.fields.get("initializer_range", 0.02))
        embed = self.model.embed_tokens.weight  # (V, E)
        embed.normal_(0.0, 1.0)
        for layer in self.model.layers:
            for weight in _linear_weights(layer):
                bound = 1 / math.sqrt(weight.shape[1])  # kaiming_uniform_(a=sqrt(5)) of fan_in
                weight.uniform_(-bound, bound)
        embed.normal_(0.0, std)
        if self.model.embed_tokens.padding_idx is not None:
            embed[self.model.embed_tokens.padding_idx] = 0
        for layer in self.model.layers:
            for weight in _linear_weights(layer):
                weight.normal_(0.0, std)
            layer.input_layernorm.weight.fill_(1.0)
            layer.post_attention_layernorm.weight.fill_(1.0)
        self.model.norm.weight.fill_(1.0)
        head = torch.empty_like(embed) if self.tied else self.lm_head.weight  # (V, E)
        bound = 1 / math.sqrt(head.shape[1])
        head.uniform_(-bound, bound)
        head.normal_(0.0, std)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, logits_to_keep: int = 0,
                use_cache: bool = True) -> Any:
        """Logits (B, Q, V) of a whole sequence (no cache: `policy.forward` continues one);
        any other argument of transformers' (a cache, labels) is a TypeError, not ignored."""
        from assay.plain_llama import plain_forward

        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        positions = (mask.cumsum(-1) - 1).clamp(min=0) if position_ids is None else position_ids
        logits, _ = plain_forward(self)(input_ids, mask, positions, None, logits_to_keep)  # type: ignore[misc]
        return _Output(logits)

    def save_pretrained(self, folder: str | Path, **_: Any) -> None:
        """config.json, generation_config.json and model.safetensors, as transformers
        writes them: a tied head is not stored twice."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().contiguous() for k, v in self.state_dict().items()
                   if not (self.tied and k == "lm_head.weight")}
        save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
        fields = dict(self.config.fields)
        fields["dtype"] = str(next(self.parameters()).dtype).removeprefix("torch.")
        _write_json(folder / "config.json", fields)
        if self.generation_config is not None:
            _write_json(folder / "generation_config.json", self.generation_config.fields)


def _write_json(path: Path, fields: dict[str, Any]) -> None:
    """As transformers writes a config: indented, keys sorted; replaced whole."""
    replace_file(path, (json.dumps(fields, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _linear_weights(layer: nn.Module) -> list[torch.Tensor]:
    """A layer's projections in the order transformers makes them."""
    attn, mlp = layer.self_attn, layer.mlp
    return [attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight, attn.o_proj.weight,
            mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight]


class _Output:
    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class NativeTokenizer:
    """A `tokenizers.Tokenizer` with the methods and attributes assay reads from a
    transformers tokenizer, behaving as transformers' `TokenizersBackend` does."""

    def __init__(self, files: dict[str, bytes], config: dict[str, Any]) -> None:
        """From a folder's tokenizer files (`tokenizer.json` at least) and its
        tokenizer_config.json, read (`from_folder`) or made (the organism's)."""
        from tokenizers import Tokenizer

        # kept as given: a run saves them into each checkpoint, and the folder they came
        # from (an older checkpoint) may be gone by then
        self._files = dict(files)
        self._tokenizer = Tokenizer.from_str(self._files["tokenizer.json"].decode("utf-8"))
        self._tokenizer.no_padding()  # transformers pads and truncates only when asked
        self._tokenizer.no_truncation()
        self.padding_side = config.get("padding_side", "right")
        self.eos_token = _token_text(config.get("eos_token"))
        self.pad_token = _token_text(config.get("pad_token"))
        self.eos_token_id = self.convert_tokens_to_ids(self.eos_token)
        self.pad_token_id = self.convert_tokens_to_ids(self.pad_token)
        #: the chat template's text, or None (`chat_template_of`)
        self.chat_template = chat_template_of(self._files, config)
        self.special_tokens_map = {name: text for name in _SPECIAL_TOKENS
                                   if (text := _token_text(config.get(name))) is not None}

    def apply_chat_template(self, conversation: list[dict[str, Any]], *,
                            add_generation_prompt: bool = False, tokenize: bool = True) -> str:
        """The template's text of one conversation, as transformers' `apply_chat_template(...,
        tokenize=False)` renders it; assay encodes that text itself (`encode_prompt`)."""
        if self.chat_template is None:
            raise ValueError("this tokenizer has no chat template")
        if tokenize:
            raise TypeError("a natively loaded tokenizer renders its chat template as text only "
                            "(tokenize=False); encode the text, or load with native=False")
        # transformers drops the fields set to None before rendering
        messages = [{k: v for k, v in message.items() if v is not None} for message in conversation]
        return _compiled(self.chat_template).render(
            messages=messages, tools=None, documents=None,
            add_generation_prompt=add_generation_prompt, **self.special_tokens_map,
        )

    @classmethod
    def from_folder(cls, folder: Path, config: dict[str, Any]) -> NativeTokenizer:
        return cls({name: (folder / name).read_bytes() for name in _TOKENIZER_FILES
                    if (folder / name).is_file()}, config)

    def __len__(self) -> int:
        """The vocabulary's size, added tokens included (as `len()` of transformers')."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def convert_tokens_to_ids(self, token: str | None) -> int | None:
        return None if token is None else self._tokenizer.token_to_id(token)

    def __call__(self, text: str | list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        if isinstance(text, str):
            encoding = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
            return {"input_ids": encoding.ids, "attention_mask": encoding.attention_mask}
        encodings = self._tokenizer.encode_batch(text, add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encodings],
                "attention_mask": [e.attention_mask for e in encodings]}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self(text, add_special_tokens=add_special_tokens)["input_ids"]

    def decode(self, ids: int | list[int], skip_special_tokens: bool = False) -> str:
        return self._tokenizer.decode([ids] if isinstance(ids, int) else list(ids),
                                      skip_special_tokens=skip_special_tokens)

    def batch_decode(self, rows: list[list[int]], skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(row, skip_special_tokens=skip_special_tokens) for row in rows]

    def save_pretrained(self, folder: str | Path) -> None:
        """The tokenizer's files, as they were read."""
        for name, data in self._files.items():
            (Path(folder) / name).write_bytes(data)


def chat_template_of(files: dict[str, bytes], tokenizer_config: dict[str, Any]) -> str | None:
    """The chat template of a folder's tokenizer files: tokenizer_config.json's
    `chat_template` or the file chat_template.jinja (where transformers 5 saves it); None
    if it has none."""
    template = tokenizer_config.get("chat_template")
    if template is None and "chat_template.jinja" in files:
        template = files["chat_template.jinja"].decode("utf-8")
    return template


@functools.lru_cache(maxsize=8)
def _compiled(template: str) -> Any:
    """The template compiled in transformers' environment for chat templates: an immutable
    sandbox (templates are code from the hub), blocks' whitespace trimmed, loop controls,
    a `tojson` that does not escape HTML, and the same globals."""
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format: str) -> str:
        from datetime import datetime

        return datetime.now().strftime(format)

    class Namespace(jinja2.utils.Namespace):  # no underscore names: no way into CPython's
        def __init__(*args: Any, **kwargs: Any) -> None:
            self, args = args[0], args[1:]
            fields = dict(*args, **kwargs)
            for name in fields:
                Namespace._check(name)
            jinja2.utils.Namespace.__init__(self, fields)

        def __setitem__(self, name: str, value: Any) -> None:
            Namespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name: Any) -> None:
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"chat templates cannot store underscore-prefixed attributes: {name!r}")

    class Dict:  # dict() and dict.fromkeys() only
        def __call__(self, *args: Any, **kwargs: Any) -> dict:
            return dict(*args, **kwargs)

        def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
            return dict.fromkeys(*args, **kwargs)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=[loopcontrols])
    environment.filters["tojson"] = tojson
    environment.globals.update(raise_exception=raise_exception, strftime_now=strftime_now,
                               dict=Dict(), namespace=Namespace)
    return environment.from_string(template)


def native_folder(path: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(config.json, tokenizer_config.json) of a folder `load_native` may load: a plain
    Llama the plain pass computes in full, with a `tokenizers` tokenizer and at most one
    chat template, in Jinja text; None for any other."""
    folder = Path(path)
    try:
        fields = json.loads((folder / "config.json").read_text())
        tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(fields, dict) and isinstance(tokenizer_config, dict)):
        return None
    return (fields, tokenizer_config) if _plain_folder(folder, fields, tokenizer_config) else None


def load_native(path: str, dtype: str = "float32") -> tuple[NativeLlama, NativeTokenizer] | None:
    """The folder at `path` as (model, tokenizer) without transformers, or None where it
    is not one the plain pass computes in full (transformers then loads it)."""
    folder = Path(path)
    if dtype != "float32":  # transformers' casting of the rotary table is its own to keep
        return None
    if (found := native_folder(path)) is None:
        return None
    fields, tokenizer_config = found
    from safetensors.torch import load_file

    generation_file = folder / "generation_config.json"
    try:
        generation = json.loads(generation_file.read_text()) if generation_file.is_file() else None
        model = NativeLlama(NativeConfig(fields), generation)
        weights = load_file(str(folder / "model.safetensors"))
    except Exception:  # noqa: BLE001 - a damaged folder: transformers' load says what is wrong
        return None
    # the parameters the file holds: a tied head is the embedding's, stored once
    own = {k: t for k, t in model.state_dict(keep_vars=True).items()
           if not (model.tied and k == "lm_head.weight")}
    if set(weights) != set(own) or any(weights[k].shape != t.shape for k, t in own.items()):
        return None  # another layout: transformers knows what to do with it
    with torch.no_grad():
        for name, tensor in own.items():
            tensor.copy_(weights[name])
    return model.to(getattr(torch, dtype)), NativeTokenizer.from_folder(folder, tokenizer_config)


def _plain_folder(folder: Path, fields: dict[str, Any], tokenizer_config: dict[str, Any]) -> bool:
    rope = fields.get("rope_parameters") or {}
    return (
        fields.get("architectures") == ["LlamaForCausalLM"]
        and all(fields.get(k, v) == v for k, v in _PLAIN_CONFIG.items())
        and rope.get("rope_type", "default") == "default"
        and not fields.get("rope_scaling")
        and fields.get("pad_token_id") is not None
        and (folder / "model.safetensors").is_file()
        and (folder / "tokenizer.json").is_file()
        and tokenizer_config.get("tokenizer_class") in _TOKENIZER_CLASSES
        and _plain_chat_template(folder, tokenizer_config)
        and not tokenizer_config.get("clean_up_tokenization_spaces")
        and not any((folder / name).exists() for name in ("added_tokens.json", "tokenizer.model"))
        and _token_text(tokenizer_config.get("pad_token")) is not None
        and _token_text(tokenizer_config.get("eos_token")) is not None
    )


def _plain_chat_template(folder: Path, tokenizer_config: dict[str, Any]) -> bool:
    """Whether the folder's chat template (if any) renders natively: one template, as text,
    without transformers' `{% generation %}` tag. Named templates (a list, or the files
    chat_template.json and additional_chat_templates/) are transformers' to choose from."""
    if (folder / "chat_template.json").exists() or (folder / "additional_chat_templates").exists():
        return False
    jinja = folder / "chat_template.jinja"
    try:
        files = {jinja.name: jinja.read_bytes()} if jinja.is_file() else {}
        template = chat_template_of(files, tokenizer_config)
    except (OSError, UnicodeDecodeError):
        return False
    return template is None or (isinstance(template, str) and not _GENERATION_TAG.search(template))


def _token_text(token: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: its text, or {"content": text}."""
    return token.get("content") if isinstance(token, dict) else token
