"""Supervised training of a prior: the same loop for every skill.

The skill (`spec.skill`) supplies the examples, the alphabet and the evaluation; this
module turns them into a trained model: a fresh network, AdamW with a cosine decay to
`final_lr_fraction` of the peak rate, the loss on the reply and its end token only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from assay.adamw import AdamW, LambdaSchedule
from assay.organism.model import build_model
from assay.organism.skills import get_skill
from assay.organism.spec import PriorSpec
from assay.organism.tokenizer import native_tokenizer

#: progress(step, total_steps, loss), called after each supervised step
ProgressCallback = Callable[[int, int, float], None]


def collate(tokenizer: Any, pairs: list[tuple[str, str]]) -> tuple[Any, Any, Any]:
    """Right-padded (input ids, attention mask, labels); the labels score only the reply and its end token."""
    import torch

    rows, labels = [], []
    for prompt, answer in pairs:
        p = tokenizer.encode(prompt, add_special_tokens=False)
        a = tokenizer.encode(answer, add_special_tokens=False) + [tokenizer.eos_token_id]
        rows.append(p + a)
        labels.append([-100] * len(p) + a)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    lab = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, lb) in enumerate(zip(rows, labels, strict=True)):
        ids[i, : len(r)] = torch.tensor(r)
        lab[i, : len(lb)] = torch.tensor(lb)
        mask[i, : len(r)] = 1
    return ids, mask, lab


def supervised_loss(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    """transformers' `LlamaForCausalLM(input_ids=ids, attention_mask=mask, labels=labels).loss`
    in the plain pass, the same operations in the same order: positions 0.. along every row
    (as transformers numbers a call without position ids), then the mean cross-entropy of
    each next token, labels of -100 left out. ids, mask, labels: (B, T)."""
    import torch
    import torch.nn.functional as F

    from assay.plain_llama import plain_forward

    positions = torch.arange(ids.shape[1]).unsqueeze(0)  # (1, T)
    logits, _ = plain_forward(model)(ids, mask, positions)  # (B, T, V)
    logits = logits.float()
    shifted = F.pad(labels, (0, 1), value=-100)[..., 1:].contiguous()  # (B, T): the next token's
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), shifted.view(-1), ignore_index=-100)


def train_prior(spec: PriorSpec, progress: ProgressCallback | None = None) -> tuple[Any, Any, dict[str, float]]:
    """Supervised training of a fresh organism; returns (model, tokenizer, evaluation)."""
    import torch

    skill = get_skill(spec.skill)
    tokenizer = native_tokenizer(skill.alphabet)
    model = build_model(spec, tokenizer, max_positions=skill.max_positions)
    examples = skill.examples(spec, spec.sft_steps * spec.batch_size, seed=spec.seed + 1)
    optimizer = AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.0)
    floor = spec.final_lr_fraction

    def lr_factor(step: int) -> float:
        cosine = 0.5 * (1 + math.cos(math.pi * min(step / max(spec.sft_steps, 1), 1.0)))
        return floor + (1 - floor) * cosine

    schedule = LambdaSchedule(optimizer, lr_factor)
    model.train()
    for step in range(spec.sft_steps):
        batch = examples[step * spec.batch_size : (step + 1) * spec.batch_size]
        ids, mask, labels = collate(tokenizer, batch)
        loss = supervised_loss(model, ids, mask, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step + 1, spec.sft_steps, loss.item())
    model.eval()
    return model, tokenizer, skill.evaluate(spec, model, tokenizer)


def train_prior_with_bar(spec: PriorSpec, name: str, quiet: bool) -> tuple[Any, Any, dict[str, float]]:
    """`train_prior` under a progress bar (loss and time left) unless `quiet`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from assay.heartbeat import heartbeat

    with Progress(
        f"building organism prior '{name}'",
        BarColumn(),
        MofNCompleteColumn(),
        "loss {task.fields[loss]:.3f}",
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=quiet,
        transient=True,
    ) as bar, heartbeat(bar, f"building organism prior '{name}' (supervised steps)"):
        job = bar.add_task("sft", total=spec.sft_steps, loss=float("nan"))

        def report(step: int, total: int, loss: float) -> None:
            bar.update(job, completed=step, loss=loss)

        return train_prior(spec, report)
