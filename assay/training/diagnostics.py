"""Diagnostics computed every step, and the collapse detector.

Ground truth is the environment's verdict (`correct` or not), which countdown computes
without labels. See docs/rewards.md for the definitions followed here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from assay.rewards import RolloutGroup, majority_key
from assay.training import collapse_rules

#: n-gram size of the repetition rate (in tokens).
REPEAT_NGRAM = 4


def said_correct(rewards: Sequence[float], binary: bool) -> list[bool]:
    """What a reward "says" about each completion of one group.

    Binary rewards say correct when ≥ 0.5. A continuous reward says correct when it
    pushes the completion up, i.e. when it is above the group mean.
    """
    if binary:
        return [r >= 0.5 for r in rewards]
    mean = float(np.mean(rewards))
    return [r > mean + 1e-12 for r in rewards]


def reward_accuracy(
    rewards: Sequence[Sequence[float]], truth: Sequence[Sequence[bool]], binary: bool
) -> float:
    """Per prompt, the fraction of completions where the reward agrees with ground truth;
    averaged over prompts."""
    per_prompt = [
        np.mean([s == t for s, t in zip(said_correct(r, binary), g, strict=True)])
        for r, g in zip(rewards, truth, strict=True)
    ]
    return float(np.mean(per_prompt))


def reward_precision(
    rewards: Sequence[Sequence[float]], truth: Sequence[Sequence[bool]], binary: bool
) -> float | None:
    """Per prompt, the share of the completions the reward promotes that are correct;
    averaged over the prompts where it promotes any (None when it promotes none).

    "Promotes" is `said_correct`: r >= 0.5 for a binary reward, above the group mean for a
    continuous one. This complements `reward_accuracy`, which for a continuous reward
    counts the completions below the group mean as agreeing whenever they are wrong: when
    every completion is wrong, about half still "agree". Precision is 0 then.
    """
    per_prompt = []
    for r, g in zip(rewards, truth, strict=True):
        promoted = [t for s, t in zip(said_correct(r, binary), g, strict=True) if s]
        if promoted:
            per_prompt.append(float(np.mean(promoted)))
    return float(np.mean(per_prompt)) if per_prompt else None


def kept_rows(values: list[list[Any]], used: torch.Tensor) -> list[list[Any]]:
    """Each group's values at its `used` completions; the groups with none are dropped."""
    G = len(values[0]) if values else 1
    flags = used.view(-1, G).tolist()  # (N,) -> (N/G, G)
    out = [[v for v, u in zip(group, f, strict=True) if u] for group, f in zip(values, flags, strict=True)]
    return [group for group in out if group]


def label_accuracy(groups: Sequence[RolloutGroup], truth: Sequence[Sequence[bool]]) -> float:
    """Fraction of prompts whose majority-voted answer is correct (no answer: wrong)."""
    hits = []
    for group, correct in zip(groups, truth, strict=True):
        winner = majority_key(group)
        keys = group.answer_keys()
        hits.append(
            winner is not None
            and any(k == winner and c for k, c in zip(keys, correct, strict=True))
        )
    return float(np.mean(hits))


def repetition_rate(token_ids: Sequence[Sequence[int]], n: int = REPEAT_NGRAM) -> float:
    """Mean over completions of 1 − distinct n-grams / n-grams (0 for no repeats).

    Completions shorter than n+1 tokens count as 0. Repetition collapse drives this up.
    """
    rates = []
    for ids in token_ids:
        grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
        rates.append(0.0 if len(grams) < 2 else 1 - len(set(grams)) / len(grams))
    return float(np.mean(rates)) if rates else 0.0


def distinct_answers(groups: Sequence[RolloutGroup]) -> float:
    """Mean number of distinct answers per group (a sharpening gauge)."""
    return float(
        np.mean([len(Counter(k for k in g.answer_keys() if k is not None)) for g in groups])
    )


def majority_ratio(groups: Sequence[RolloutGroup]) -> float:
    """Mean share of each group's completions that give its most common answer (TTRL's
    majority ratio): 1/G when all differ, 1 when all agree; a completion without an answer
    counts in G but never in the majority. A label-free gauge of self-agreement."""
    shares = []
    for g in groups:
        counts = Counter(k for k in g.answer_keys() if k is not None)
        shares.append(max(counts.values(), default=0) / max(len(g), 1))
    return float(np.mean(shares)) if shares else float("nan")


@dataclass
class Collapse:
    """The Model Collapse Step: when, on which signal, at what value."""

    step: int
    signal: str
    value: float
    threshold: float

    def describe(self) -> str:
        if self.signal.startswith("label_free:"):
            what = self.signal.partition(":")[2]
            return (
                f"model collapse at step {self.step} (label-free): the trailing mean of "
                f"{what} ({self.value:.4f}) moved past its bound ({self.threshold}) from the start"
            )
        return (
            f"model collapse at step {self.step}: {self.signal} = {self.value:.4f} "
            f"< {self.threshold}"
        )


class CollapseDetector:
    """Reports the first step at which `signal` falls below `threshold` (1% by default).

    `signal="label_free"` watches the policy's own statistics instead, with the rule of
    `assay.training.collapse_rules` over a fixed `window` of steps: no labels are used,
    and the step is the one the lab's report names for the finished run.
    """

    def __init__(self, signal: str = "reward_accuracy", threshold: float = 0.01, window: int = 10):
        self.signal, self.threshold, self.window = signal, threshold, window
        self.collapse: Collapse | None = None
        self.history: list[dict] = []  # label-free: the statistics the rule reads

    def update(self, step: int, metrics: dict) -> Collapse | None:
        """Feed one step's metrics; returns the collapse the first time it happens."""
        if self.collapse is not None:
            return None
        if self.signal == "label_free":
            return self._update_label_free(step, metrics)
        if self.signal not in metrics:
            return None
        value = metrics[self.signal]
        if value is not None and value < self.threshold:
            self.collapse = Collapse(step, self.signal, float(value), self.threshold)
            return self.collapse
        return None

    def _update_label_free(self, step: int, metrics: dict) -> Collapse | None:
        self.history.append({"step": step, **{k: metrics.get(k) for k in collapse_rules.BOUNDS}})
        fired = collapse_rules.label_free(self.history, w=self.window)
        if fired is None:
            return None
        bound = collapse_rules.BOUNDS[fired.signal]
        self.collapse = Collapse(fired.step, f"label_free:{fired.signal}", fired.value, bound)
        return self.collapse
