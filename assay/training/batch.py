"""A rollout batch as tensors (prompts left-padded, completions right-padded) and the
masks and per-token statistics read over it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from assay.training.policy import TokenStats
from assay.training.rollout import Generation


@dataclass
class RolloutBatch:
    """A rollout batch as tensors: prompts left-padded, completions right-padded.

    input_ids, attention_mask: (N, P + C); loss_mask: (N, C), 1 on completion tokens that
    count in the loss. Row i*G + j is completion j of prompt i. Shapes in comments: N rows
    (prompts × G completions), P prompt length, C completion length, V vocabulary, G group
    size.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    completions: list[Generation]
    prompt_tokens: int

    @property
    def completion_len(self) -> int:
        return self.loss_mask.size(1)

    @classmethod
    def build(
        cls,
        prompts: list[list[int]],
        generations: list[list[Generation]],
        pad_id: int,
        *,
        mask_truncated: bool = False,
    ) -> RolloutBatch:
        # N rows: prompt i's G completions are rows i*G .. i*G + G-1
        rows = [(p, g) for p, group in zip(prompts, generations, strict=True) for g in group]
        width_p = max(len(p) for p, _ in rows)  # P: the longest prompt
        width_c = max(1, max(len(g.token_ids) for _, g in rows))  # C: the longest completion
        # Rows as lists first, one tensor each at the end: a tensor write per row and
        # field costs more than the rest of this function on a small model.
        ids, attn, loss_mask = [], [], []
        for p, g in rows:
            left, right = width_p - len(p), width_c - len(g.token_ids)
            # the prompt left-padded to P, the completion right-padded to C
            ids.append([pad_id] * left + list(p) + list(g.token_ids) + [pad_id] * right)
            attn.append([0] * left + [1] * (len(p) + len(g.token_ids)) + [0] * right)
            if g.finished or not mask_truncated:  # observations in an episode: never
                counted = [1.0] * len(g.token_ids) if g.model_mask is None else [float(m) for m in g.model_mask]
            else:
                counted = [0.0] * len(g.token_ids)
            loss_mask.append(counted + [0.0] * right)
        ids = torch.tensor(ids, dtype=torch.long)  # (N, P + C)
        attn = torch.tensor(attn, dtype=torch.long)  # (N, P + C)
        loss_mask = torch.tensor(loss_mask, dtype=torch.float32)  # (N, C)
        prompt_tokens = sum(len(p) for p, _ in rows)
        return cls(ids, attn, loss_mask, [g for _, g in rows], prompt_tokens)

    def to(self, device) -> RolloutBatch:
        self.input_ids = self.input_ids.to(device)
        self.attention_mask = self.attention_mask.to(device)
        self.loss_mask = self.loss_mask.to(device)
        return self


def joined_stats(parts: list[TokenStats], mask: torch.Tensor, *, detach: bool = False) -> TokenStats:
    """Micro-batches' statistics (rows in batch order) as one `TokenStats`, each field
    (N, C) and 0 past each completion's end (`mask`)."""
    return TokenStats(*(
        torch.cat([getattr(p, f).detach() if detach else getattr(p, f) for p in parts]) * mask
        for f in ("logprobs", "entropies", "self_certainty")
    ))


def scattered_stats(parts: list[tuple[torch.Tensor, TokenStats]], mask: torch.Tensor) -> TokenStats:
    """Passes' statistics over some rows each ((rows, stats), rows an index tensor) as one
    detached `TokenStats` in batch order, each field (N, C) and 0 past each completion's
    end (`mask`, (N, C)); a row no pass read is 0 throughout."""
    fields = []
    for f in ("logprobs", "entropies", "self_certainty"):
        out = torch.zeros_like(mask)  # (N, C)
        for rows, part in parts:
            out[rows] = getattr(part, f).detach().to(out.dtype)
        fields.append(out * mask)
    return TokenStats(*fields)


def model_mask(g: Generation) -> np.ndarray:
    """Which of a generation's tokens the model wrote (an episode's observations: not)."""
    n = len(g.token_ids)
    return np.ones(n, dtype=bool) if g.model_mask is None else np.array(g.model_mask, dtype=bool)


def completion_mask_of(batch: RolloutBatch) -> torch.Tensor:
    """1 on every token the model generated (finished or not), whatever the loss mask
    says; an episode's observations are 0."""
    lengths = torch.tensor(
        [len(g.token_ids) for g in batch.completions], device=batch.loss_mask.device
    )  # (N,)
    mask = (  # (1, C) < (N, 1) -> (N, C)
        torch.arange(batch.completion_len, device=lengths.device)[None, :] < lengths[:, None]
    ).float()
    for i, g in enumerate(batch.completions):
        if g.model_mask is not None:
            mask[i, : len(g.model_mask)] = torch.tensor(g.model_mask, dtype=mask.dtype)
    return mask
