"""GRPO's arithmetic: group-normalised advantages and the clipped policy loss.

Pure functions of tensors, so that tests can feed identical inputs to these and to
TRL's GRPO loss and compare (tests/test_loss_vs_trl.py). Shapes in comments: N rows
(completions, group after group), C completion length, G group size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Added to the group std before dividing, as TRL does.
STD_EPS = 1e-4


def group_advantages(
    rewards: torch.Tensor, group_size: int, *, scale: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, group std per completion) for rewards laid out group after group.

    A = r − mean(group), divided by (std(group) + 1e-4) when `scale` (GRPO), left
    unscaled otherwise (Dr. GRPO). std is the unbiased (Bessel) one, as in TRL.
    """
    grouped = rewards.view(-1, group_size)  # (N,) -> (N/G, G)
    mean = grouped.mean(dim=1, keepdim=True)  # (N/G, 1)
    std = grouped.std(dim=1, keepdim=True)  # (N/G, 1)
    advantages = grouped - mean  # (N/G, G)
    if scale:
        advantages = advantages / (std + STD_EPS)
    return advantages.reshape(-1), std.expand_as(grouped).reshape(-1)  # (N,), (N,)


def masked_group_advantages(
    rewards: torch.Tensor, keep: torch.Tensor, group_size: int, *, scale: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(advantages, group std per completion, used) with some completions left out.

    `keep` (N,) is False for completions whose reward is unknown (the verifier broke):
    each group's mean and std are those of its kept completions alone, exactly as
    `group_advantages` computes them for a group that never had the others. A group left
    with fewer than two completions has no spread to learn from and is skipped. `used`
    (N,) marks the completions that count in the loss; the others get advantage 0 and a
    NaN std.
    """
    if bool(keep.all()):  # the common case, and bit-for-bit the unmasked computation
        advantages, std = group_advantages(rewards, group_size, scale=scale)
        return advantages, std, keep.clone()
    grouped = rewards.view(-1, group_size)  # (N,) -> (N/G, G)
    kept = keep.view(-1, group_size)  # (N/G, G)
    advantages = torch.zeros_like(grouped)  # (N/G, G)
    std = torch.full_like(grouped, float("nan"))  # (N/G, G)
    used = torch.zeros_like(kept)  # (N/G, G)
    for g in range(grouped.size(0)):
        rows = kept[g].nonzero().squeeze(1)  # (K,): the kept completions of group g
        if rows.numel() < 2:
            continue
        a, s = group_advantages(grouped[g, rows], rows.numel(), scale=scale)  # (K,), (K,)
        advantages[g, rows], std[g, :], used[g, rows] = a, s[0], True
    return advantages.reshape(-1), std.reshape(-1), used.reshape(-1)  # (N,) each


def token_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of `values` over the tokens `mask` marks (both (N, C)); 0.0 when it marks none."""
    return float((values * mask).sum() / mask.sum().clamp(min=1.0))


@dataclass
class LossParts:
    loss: torch.Tensor  #: the scalar to backpropagate
    clip_ratio: float  #: fraction of tokens whose ratio was clipped (where clipping binds)
    kl: float  #: mean k3 KL to the reference over completion tokens (0 without one)
    clipped: float = 0.0  #: how many tokens' ratios were clipped (the numerator of clip_ratio)


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(π ‖ π_ref): exp(ref − logp) − (ref − logp) − 1."""
    delta = ref_logprobs - logprobs
    return torch.exp(delta) - delta - 1


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    loss_type: str,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    beta: float = 0.0,
    ref_logprobs: torch.Tensor | None = None,
    max_completion_length: int | None = None,
    num_sequences: int | None = None,
    num_tokens: float | None = None,
) -> LossParts:
    """The clipped surrogate loss of GRPO over a (micro-)batch.

    logprobs, old_logprobs, ref_logprobs and mask are (N, C); advantages is (N,).
    Per token: max(−A·ratio, −A·clip(ratio, 1−ε_low, 1+ε_high)) + β·k3.
    Aggregation (`loss_type`):
      grpo     mean over tokens of each sequence, then mean over sequences;
      dapo     sum over all tokens / number of tokens (token-mean);
      dr_grpo  sum over all tokens / (sequences × max_completion_length).
    For micro-batches pass the whole batch's `num_sequences` and `num_tokens`, so that
    the micro-batch losses add up to the batch loss.
    """
    mask = mask.to(logprobs.dtype)
    num_sequences = num_sequences or logprobs.size(0)
    num_tokens = num_tokens if num_tokens is not None else float(mask.sum().clamp(min=1.0))
    adv = advantages.unsqueeze(1)  # (N, 1): one advantage for every token of a row
    ratio = torch.exp(logprobs - old_logprobs)  # (N, C)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)  # (N, C)
    per_token = -torch.min(ratio * adv, clipped * adv)  # (N, C)
    kl_value = 0.0
    if ref_logprobs is not None:
        per_token_kl = k3_kl(logprobs, ref_logprobs)  # (N, C)
        kl_value = token_mean(per_token_kl.detach(), mask)
        if beta != 0.0:
            per_token = per_token + beta * per_token_kl
    if loss_type == "grpo":
        per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)  # (N,)
        loss = per_seq.sum() / num_sequences
    elif loss_type == "dapo":
        loss = (per_token * mask).sum() / num_tokens
    elif loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("dr_grpo needs max_completion_length")
        loss = (per_token * mask).sum() / (num_sequences * max_completion_length)
    else:
        raise ValueError(f"unknown loss_type {loss_type!r} (grpo, dr_grpo, dapo)")
    with torch.no_grad():
        low = (ratio < 1 - epsilon_low) & (adv < 0)  # (N, C)
        high = (ratio > 1 + epsilon_high) & (adv > 0)  # (N, C)
        flags = (low | high).to(mask.dtype) * mask  # (N, C)
        clip_ratio = float(flags.sum() / mask.sum().clamp(min=1.0))
    return LossParts(loss, clip_ratio, kl_value, float(flags.sum()))
