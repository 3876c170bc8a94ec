"""Loading a policy (any Hugging Face causal LM, the organism included) and reading its
per-token statistics: log-probs of the sampled tokens, entropies and self-certainty."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


class ModelLoadError(RuntimeError):
    """The model could not be found or loaded; the message says which and why."""


def resolve_model_path(model: str, prior: dict[str, Any] | None = None, quiet: bool = False) -> str:
    """A path or hub id for `from_pretrained`: `organism[:preset]` builds or finds its prior."""
    from assay.training import organism

    if organism.is_organism(model):
        preset = organism.parse_organism(model)
        try:
            spec = organism.make_spec(preset, **(prior or {}))
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from None
        return str(organism.ensure_prior(spec, preset, quiet=quiet))
    if prior:
        raise ModelLoadError(f"prior.* options apply only to --model organism, not {model!r}")
    return model


def quiet_transformers() -> None:
    """Silence transformers' per-load progress bars and info logs (our bar says enough)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_policy(path: str, *, device: str = "cpu", dtype: str = "float32"):
    """(model, tokenizer) through `AutoModelForCausalLM` / `AutoTokenizer`, like any HF model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()

    local = Path(path).exists()
    if not local and (path.startswith(("/", ".", "~")) or path.count("/") > 1):
        raise ModelLoadError(f"no model folder at {path!r}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, dtype), local_files_only=local
        )
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "" if local else " (a hub id needs network access; pass a local folder instead)"
        raise ModelLoadError(f"cannot load model {path!r}: {first}{hint}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model.to(device), tokenizer


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
) -> TokenStats:
    """Statistics at the last `completion_len` positions of `input_ids` (prompt left-padded,
    completion right-padded). Logits are divided by the sampling temperature first, so
    log-probs match the distribution the completions were drawn from."""
    # Positions count real tokens only, so a left-padded prompt is read as unpadded.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
    ).logits
    # The logits at position t predict token t+1: keep those that predict the completion.
    logits = logits[:, -completion_len - 1 : -1, :].float() / temperature
    targets = input_ids[:, -completion_len:]
    log_norm = torch.logsumexp(logits, dim=-1)
    logprobs = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - log_norm
    if with_entropy:
        with torch.no_grad():
            z = logits.detach()
            probs = torch.softmax(z, dim=-1)
            entropies = log_norm.detach() - (probs * z).sum(-1)
            certainty = log_norm.detach() - z.mean(-1)
    else:
        entropies = certainty = torch.zeros_like(logprobs, requires_grad=False)
    return TokenStats(logprobs, entropies, certainty)
