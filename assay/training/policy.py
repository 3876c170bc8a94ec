"""Loading a policy (any Hugging Face causal LM, the organism included) and reading its
per-token statistics: log-probs of the sampled tokens, entropies and self-certainty."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from assay.errors import AssayError, first_line
from assay.hf import hub_reachable, quiet_transformers
from assay.native_llama import load_native
from assay.plain_llama import KVCache, cache_argument, plain_forward


class ModelLoadError(AssayError, RuntimeError):
    """The model could not be found or loaded; the message says which and why."""


def resolve_model_path(model: str, prior: dict[str, Any] | None = None, quiet: bool = False) -> str:
    """A path or hub id for `from_pretrained`: `organism[:preset]` builds or finds its prior;
    `smollm2` and a `.gguf` file are converted once into a cached folder."""
    from assay import organism
    from assay.training import pretrained

    if organism.is_organism(model):
        preset = organism.parse_organism(model)
        try:
            spec = organism.make_spec(preset, **(prior or {}))
        except ValueError as exc:  # OptionError included
            raise ModelLoadError(str(exc)) from None
        return str(organism.ensure_prior(spec, preset, quiet=quiet))
    if prior:
        raise ModelLoadError(f"prior.* options apply only to --model organism, not {model!r}")
    if pretrained.is_gguf_source(model):
        try:
            return str(pretrained.resolve(model, quiet=quiet))
        except pretrained.PretrainedError as exc:
            raise ModelLoadError(str(exc)) from None
    return run_checkpoint(model) or model


def run_checkpoint(model: str) -> str | None:
    """The latest checkpoint of a run named by its folder (`runs/x`) or by
    `runs/x/checkpoints/last`; None when `model` names neither."""
    from assay.training import checkpoint

    path = Path(model)
    if path.name == "last" and path.parent.name == "checkpoints" and not path.exists():
        run = path.parent.parent
    elif ((path / "checkpoints").is_dir() or (path / "config.yaml").is_file()) \
            and not (path / "config.json").is_file():  # a run's folder, not a model's
        run = path
    else:
        return None
    found = checkpoint.latest(run)
    if found is None:
        last = run / "checkpoints" / "last"  # `--backend trl` saves the model there, whole
        if (last / "config.json").is_file():
            return str(last)
        raise ModelLoadError(f"run {run} has no checkpoint yet")
    return str(found)


def is_local_model(path: str) -> bool:
    """True for a model folder on disk, False for a hub id; a path that looks like a folder
    but is not there is a `ModelLoadError` (rather than a failed hub look-up)."""
    if Path(path).exists():
        return True
    if path.startswith(("/", ".", "~")) or path.count("/") > 1:
        raise ModelLoadError(f"no model folder at {path!r}")
    return False


def device_name(setting: str) -> str:
    """The torch device of a `device` setting: "auto" is cuda when a GPU is visible."""
    return "cuda" if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()) else "cpu"


def load_policy(path: str, *, device: str = "cpu", dtype: str = "float32", native: bool = True):
    """(model, tokenizer) through `AutoModelForCausalLM` / `AutoTokenizer`, like any HF
    model; a folder the plain pass computes in full (the organism's) without transformers
    (`native_llama`: the same numbers, seconds sooner), unless `native` is False (for
    what only a transformers model has: hooks, adapters, its own forward pass)."""
    local = is_local_model(path)
    if native and local and Path(path).is_dir() and (loaded := load_native(path, dtype)) is not None:
        model, tokenizer = loaded
        tokenizer.padding_side = "left"  # as below
        return model.to(device), tokenizer

    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    if local and Path(path).is_dir() and not any(
        (Path(path) / name).is_file() for name in TOKENIZER_FILES
    ):
        raise ModelLoadError(
            f"cannot load model {path!r}: the folder has no tokenizer (none of "
            f"{', '.join(TOKENIZER_FILES)}); save the tokenizer beside the model"
        )
    cache_only = local or not hub_reachable()  # an unreachable hub: its cache, at once
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=cache_only)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, dtype), local_files_only=cache_only
        )
    except Exception as exc:
        # transformers reports a folder it cannot use with many exception types (OSError,
        # ValueError for a missing tokenizer, KeyError for an unknown model type, ...):
        # whichever it is, the user gets its first line, not a traceback.
        first = first_line(exc)
        raise ModelLoadError(f"cannot load model {path!r}: {first[:300]}{hub_hint(local)}") from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ModelLoadError(
                f"the tokenizer of {path} has neither a pad nor an end-of-sequence token: "
                "sampling cannot tell where a completion ends"
            )
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked out: any id serves
    tokenizer.padding_side = "left"
    return model.to(device), tokenizer


def hub_hint(local: bool) -> str:
    """What to add to a failed load of a hub id (nothing for a local folder)."""
    if local:
        return ""
    if not hub_reachable():
        return (" (not a local folder, and as a hub id it is not in the local cache: the hub "
                "cannot be reached from here; pass a local folder instead)")
    return " (a hub id needs network access; pass a local folder instead)"


#: files of which a model folder needs one for `AutoTokenizer` to load its tokenizer
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def uses_chat_template(tokenizer, chat_template: bool | None) -> bool:
    """Whether prompts go through the tokenizer's chat template: `None` (auto) means
    whenever it has one; `True` on a tokenizer without one is an error, not a silent off."""
    has = getattr(tokenizer, "chat_template", None) is not None
    if chat_template and not has:
        raise ModelLoadError(
            "chat_template=true, but this model's tokenizer has no chat template "
            "(set chat_template=false, or use a chat model)"
        )
    return has if chat_template is None else bool(chat_template)


def encode_prompt(tokenizer, text: str, chat: bool) -> list[int]:
    """The token ids of one prompt: as a user message through the chat template (ending
    with the assistant's turn opened), or as plain text."""
    if not chat:
        return list(tokenizer(text)["input_ids"])
    # tokenize=False, then encode: transformers 5 returns a BatchEncoding from
    # tokenize=True where 4.x returned a list; the template's text is the same in both.
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )
    return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])


def stop_token_ids(model, tokenizer) -> list[int]:
    """The tokens that end a completion: the tokenizer's end token and the model's
    generation config's (a chat model's end-of-turn token may be only in the latter)."""
    ids = [tokenizer.eos_token_id]
    generation = getattr(model, "generation_config", None)
    extra = getattr(generation, "eos_token_id", None)
    ids += extra if isinstance(extra, (list, tuple)) else [extra]
    return sorted({int(i) for i in ids if i is not None})


def freeze_below(model, n: int) -> int:
    """Leave only the last `n` decoder layers and the final norm trainable; return how
    many parameters stay trainable. The frozen lower layers need no gradients, so the
    backward pass stops at layer −n and the optimizer keeps no state for them."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise ModelLoadError(
            f"train_layers: cannot find the decoder layers of {type(model).__name__}"
        )
    if n > len(layers):
        raise ModelLoadError(f"train_layers={n}, but the model has {len(layers)} layers")
    model.requires_grad_(False)
    for layer in list(layers)[-n:]:
        layer.requires_grad_(True)
    norm = getattr(decoder, "norm", None)
    if norm is not None:
        norm.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class TokenStats:
    """Per-token statistics of completions, shape (N, C): zero beyond each completion's end."""

    logprobs: torch.Tensor  #: log π(y_t) of the sampled token (keeps the graph when grad is on)
    entropies: torch.Tensor  #: H(p_t), detached
    self_certainty: torch.Tensor  #: logsumexp(z_t) − mean_j z_t,j, detached


def completion_stats(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_len: int,
    temperature: float,
    *,
    with_entropy: bool = True,
    prompts: PromptPass | None = None,
) -> TokenStats:
    """Statistics at the last `completion_len` positions of `input_ids` (prompt left-padded,
    completion right-padded). Logits are divided by the sampling temperature first, so
    log-probs match the distribution the completions were drawn from. `prompts`: the
    prompts' pass already made (`completion_logits`)."""
    # Shapes: N rows, P prompt length, C = completion_len, V vocabulary; input_ids (N, P + C).
    logits = completion_logits(model, input_ids, attention_mask, completion_len, prompts)  # (N, C, V)
    logits = logits.float() / temperature  # z_t: (N, C, V)
    targets = input_ids[:, -completion_len:]  # (N, C): the sampled tokens y_t
    log_norm = torch.logsumexp(logits, dim=-1)  # (N, C)
    logprobs = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - log_norm  # (N, C)
    if with_entropy:
        with torch.no_grad():
            z = logits.detach()  # (N, C, V)
            probs = torch.softmax(z, dim=-1)  # (N, C, V)
            entropies = log_norm.detach() - (probs * z).sum(-1)  # (N, C)
            certainty = log_norm.detach() - z.mean(-1)  # (N, C)
    else:
        entropies = certainty = torch.zeros_like(logprobs, requires_grad=False)  # (N, C)
    return TokenStats(logprobs, entropies, certainty)


def forward(
    model: Any,
    ids: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    cache: Any = None,
    logits_to_keep: int = 0,
    real: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Any]:
    """One pass of the model over `ids` (B, Q) after `cache`: (logits (B, Q', V), the
    cache extended by these positions). A Llama model goes through the plain pass of
    `plain_llama`, the same bits with less Python, when it reproduces the model exactly.
    `real` ((B, Q) bool) marks the positions whose logits are wanted, each row's first:
    the plain pass computes only those (the others' logits are then 0); any other model
    computes every position."""
    plain = plain_forward(model)
    if plain is not None and (cache is None or isinstance(cache, KVCache)):
        return plain(ids, mask, positions, cache, logits_to_keep, real)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=logits_to_keep,
        **({cache_argument(model): cache} if cache is not None else {}),
    )
    return out.logits, out.cache if "cache" in out else out.past_key_values  # renamed in 5.24


def prefill(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """Read left-padded prompts once: the logits at each prompt's last position, and the
    KV cache to continue from."""
    # ids, mask: (U, P), U prompts left-padded to length P.
    # Positions count real tokens only, so a left-padded prompt is read as unpadded.
    logits, cache = forward(model, ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), logits_to_keep=1)
    return logits[:, -1], cache  # logits (U, 1, V) -> (U, V); cache: U rows of P positions


@dataclass
class PromptPass:
    """The distinct prompts of a batch read once: what the completions continue from.

    last: (U, V) the logits at each distinct prompt's last position (they predict the
    completions' first token); cache: their keys and values, U rows; lengths: (U,) their
    real tokens; row_prompt: (N,) the distinct prompt of each row.
    """

    last: torch.Tensor
    cache: Any
    lengths: torch.Tensor
    row_prompt: torch.Tensor


def read_prompts(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 completion_len: int) -> PromptPass:
    """One pass over the distinct prompts of these rows (prompt left-padded to the width
    of `input_ids` less `completion_len`)."""
    P = input_ids.size(1) - completion_len  # input_ids, attention_mask: (N, P + C)
    distinct, row_prompt = torch.unique(  # (U, 2P) distinct (ids, mask) rows; (N,) row -> U
        torch.cat([input_ids[:, :P], attention_mask[:, :P]], 1), dim=0, return_inverse=True
    )
    ids, mask = distinct[:, :P], distinct[:, P:]  # (U, P) each
    last, cache = prefill(model, ids, mask)  # (U, V); cache: U rows
    return PromptPass(last, cache, mask.sum(-1), row_prompt)


class SharedPrompts:
    """A batch's prompt pass, made once for all of its micro-batches.

    Micro-batched, each micro-batch would otherwise read its own prompts again (a model
    call and its backward pass each, which at the organism's size cost more in fixed
    overhead than in arithmetic). Here the pass is made once (its graph kept when
    gradients are on); each micro-batch continues from stand-ins for its outputs
    (detached copies that gather the gradients its backward pass sends them), and
    `backward` then runs what they gathered through the pass once. By the chain rule the
    gradients are the same as one pass per micro-batch would give, summed in another
    order (equal to rounding). Only for the plain pass's cache (`PlainLlama`): `of`
    gives None for any other model, which then reads its prompts per micro-batch.
    """

    def __init__(self, prompts: PromptPass) -> None:
        self._ends = [prompts.last] + [t for kv in prompts.cache.layers for t in kv]
        self._stand_ins = [t.detach().requires_grad_(t.requires_grad) for t in self._ends]
        last, *kv = self._stand_ins
        cache = KVCache([[kv[i], kv[i + 1]] for i in range(0, len(kv), 2)])
        self._prompts = PromptPass(last, cache, prompts.lengths, prompts.row_prompt)

    @classmethod
    def of(cls, model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
           completion_len: int) -> SharedPrompts | None:
        """The batch's prompts read once, or None where they cannot be shared this way
        (no prompt, or a model outside the plain pass: decided before any pass is made)."""
        if input_ids.size(1) == completion_len or plain_forward(model) is None:
            return None
        return cls(read_prompts(model, input_ids, attention_mask, completion_len))

    def rows(self, rows: slice | torch.Tensor) -> PromptPass:
        """The prompt pass as these rows of the batch see it."""
        p = self._prompts
        return PromptPass(p.last, p.cache, p.lengths, p.row_prompt[rows])

    def backward(self) -> None:
        """The gradients the micro-batches sent into the prompts, run through their pass."""
        pairs = [(end, stand_in.grad) for end, stand_in in zip(self._ends, self._stand_ins, strict=True)
                 if stand_in.grad is not None]
        if pairs:
            torch.autograd.backward([end for end, _ in pairs], [grad for _, grad in pairs])


def completion_logits(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_len: int,
    prompts: PromptPass | None = None,
) -> torch.Tensor:
    """The logits that predict each of the last `completion_len` tokens, shape (N, C, V).

    Rows with the same prompt (a group's completions) share one pass over that prompt: its
    keys and values are computed once per distinct prompt and repeated for each row, then
    the completions run on top of them. That is exact, since a prompt token never attends
    to what follows it, and it spares the prompt's share of the work G−1 times in G.
    Gradients flow through the shared prompt pass like through any other. `prompts`: that
    pass already made for these rows (`SharedPrompts.rows`), else it is made here.

    The logits past each completion's end (padding) are not computed by the plain pass
    (`plain_llama`): they are 0 there, and every reader masks them out.
    """
    # Shapes: N rows, P prompt length, C = completion_len, V vocabulary, U distinct prompts.
    P = input_ids.size(1) - completion_len  # input_ids, attention_mask: (N, P + C)
    if P == 0:  # nothing to share
        return model(input_ids=input_ids, attention_mask=attention_mask).logits  # (N, C, V)
    own = prompts is None
    if own:
        prompts = read_prompts(model, input_ids, attention_mask, completion_len)
    row_prompt = prompts.row_prompt  # (N,) row -> U
    first = prompts.last[row_prompt, None]  # (N, 1, V): the last prompt position predicts token 0
    if completion_len == 1:
        return first
    cache = prompts.cache  # U -> N rows: its prompt's keys and values per row
    if own:
        cache.batch_select_indices(row_prompt)  # in place: transformers' caches have no copy
    else:
        cache = cache.selected(row_prompt)  # a copy: the next micro-batch reads the same pass
    positions = prompts.lengths[row_prompt, None] + torch.arange(  # (N, 1) + (C-1,) -> (N, C-1)
        completion_len - 1, device=input_ids.device
    )
    # Completion token t predicts token t+1: the last one predicts nothing we score, and
    # neither does padding (its logits are masked out everywhere they are read), so only
    # the real tokens are read (`real`): on short completions, about half the positions.
    rest, _ = forward(  # (N, C-1, V)
        model,
        input_ids[:, P:-1],  # (N, C-1)
        attention_mask[:, :-1],  # (N, P + C-1): prompt and cache included
        positions,  # (N, C-1)
        cache,
        real=attention_mask[:, P:-1].bool(),  # (N, C-1): right-padded completions
    )
    return torch.cat([first, rest], 1)  # (N, C, V)
