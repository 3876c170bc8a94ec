"""Collapse criteria, computed after the fact from a run's `metrics.jsonl`.

Three criteria, each reported with the step at which it first fired (or None):

- `reward_accuracy` — the study's Model Collapse Step, as the study defines it: the first
  step at which reward accuracy falls below 1%. Needs labels (ground truth).
- `reward_precision` — the same threshold on a trailing mean (one window) of reward
  precision: per prompt, the share of the completions the reward promotes that are correct. It complements reward accuracy
  for continuous rewards, whose agreement counts the below-mean completions as "agreeing"
  whenever they are wrong (about half agree when every completion is wrong). Needs labels.
- `label_free` — needs no labels: the first step at which a trailing mean of the policy's
  own statistics has drifted past a fixed bound from the run's start: token entropy below
  `ENTROPY_FLOOR` of its start (sharpened to near-determinism), completion length changed
  by more than `LENGTH_DRIFT` of its start (length collapse, either way), or the 4-gram
  repetition rate up by more than `REPETITION_RISE` (repetition collapse).

The bounds were fixed before the lab's comparisons were run and are not tuned to them;
docs/lab.md says what they catch and miss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the study's threshold on reward accuracy (and the one used on reward precision)
STUDY_THRESHOLD = 0.01
#: label-free: token entropy below this fraction of its start
ENTROPY_FLOOR = 0.25
#: label-free: completion length changed by more than this fraction of its start
LENGTH_DRIFT = 0.25
#: label-free: 4-gram repetition rate up by more than this (absolute)
REPETITION_RISE = 0.10
#: steps in the start window and in the trailing mean (fewer for short runs)
WINDOW = 10

CRITERIA = ("reward_accuracy", "reward_precision", "label_free")
LABELS = {
    "reward_accuracy": "study: reward accuracy < 1%",
    "reward_precision": "reward precision < 1%",
    "label_free": "label-free: entropy, length or repetition drift",
}


@dataclass
class Fired:
    """One criterion's first firing: the step, the signal that fired and its value."""

    step: int
    signal: str
    value: float

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "signal": self.signal, "value": round(self.value, 4)}


def window(n: int) -> int:
    """Steps per window for a run of n steps: `WINDOW`, fewer for short runs (at least 1)."""
    return max(1, min(WINDOW, n // 5))


def _series(rows: Sequence[dict], key: str) -> tuple[list[int], np.ndarray]:
    pairs = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return [s for s, _ in pairs], np.array([v for _, v in pairs], dtype=float)


def below(
    rows: Sequence[dict], key: str, threshold: float = STUDY_THRESHOLD, smooth: bool = False
) -> Fired | None:
    """The first step at which `key` (or, with `smooth`, its trailing mean over a window)
    is below `threshold`."""
    steps, values = _series(rows, key)
    if smooth and len(values):
        w = window(len(values))
        trailing = np.convolve(values, np.ones(w) / w, mode="valid")
        steps, values = steps[w - 1 :], trailing
    for step, value in zip(steps, values, strict=True):
        if value < threshold:
            return Fired(step, key, float(value))
    return None


def label_free(rows: Sequence[dict]) -> Fired | None:
    """The first step at which a trailing mean drifted past a bound from the start window."""
    first: Fired | None = None
    for key, test in (
        ("entropy", lambda now, start: start > 0 and now < ENTROPY_FLOOR * start),
        ("completion_length", lambda now, start: start > 0 and abs(now / start - 1) > LENGTH_DRIFT),
        ("repetition_rate", lambda now, start: now - start > REPETITION_RISE),
    ):
        steps, values = _series(rows, key)
        w = window(len(values))
        if len(values) < 2 * w:
            continue
        start = float(values[:w].mean())
        trailing = np.convolve(values, np.ones(w) / w, mode="valid")  # trailing[i] ends at i+w-1
        for i in range(w, len(trailing)):  # windows that do not overlap the start window
            if test(float(trailing[i]), start):
                if first is None or steps[i + w - 1] < first.step:
                    first = Fired(steps[i + w - 1], key, float(trailing[i]))
                break
    return first


def criteria(rows: Sequence[dict]) -> dict[str, Fired | None]:
    """Each criterion's first firing (None when it never fired) for one run's metrics."""
    return {
        "reward_accuracy": below(rows, "reward_accuracy"),
        # one step's precision is over few prompts (0 by chance when accuracy is low):
        # the complement uses a trailing mean; the study's criterion stays per step
        "reward_precision": below(rows, "reward_precision", smooth=True),
        "label_free": label_free(rows),
    }
