"""Collapse criteria, computed after the fact from a run's `metrics.jsonl`.

Three criteria, each reported with the step at which it first fired (or None):

- `reward_accuracy` — the study's Model Collapse Step, as the study defines it: the first
  step at which reward accuracy falls below 1%. Needs labels (ground truth).
- `reward_precision` — the same threshold on a trailing mean (one window) of reward
  precision: per prompt, the share of the completions the reward promotes that are correct. It complements reward accuracy
  for continuous rewards, whose agreement counts the below-mean completions as "agreeing"
  whenever they are wrong (about half agree when every completion is wrong). Needs labels.
- `label_free` — needs no labels: the rule of `assay.training.collapse_rules` (entropy,
  length or repetition drifted past a fixed bound from the run's start), which the
  trainer can also stop at (`collapse_signal: label_free`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from assay.training.collapse_rules import (  # noqa: F401 - the lab's names for the shared rule
    ENTROPY_FLOOR,
    LENGTH_DRIFT,
    REPETITION_RISE,
    WINDOW,
    Fired,
    label_free,
    window,
)
from assay.training.collapse_rules import series as _series

#: the study's threshold on reward accuracy (and the one used on reward precision)
STUDY_THRESHOLD = 0.01

CRITERIA = ("reward_accuracy", "reward_precision", "label_free")
LABELS = {
    "reward_accuracy": "study: reward accuracy < 1%",
    "reward_precision": "reward precision < 1%",
    "label_free": "label-free: entropy, length or repetition drift",
}


def below(
    rows: Sequence[dict], key: str, threshold: float = STUDY_THRESHOLD, smooth: bool = False
) -> Fired | None:
    """The first step at which `key` (or, with `smooth`, its trailing mean over a window)
    is below `threshold`."""
    return _first(rows, key, smooth, lambda value: value < threshold)


def at_or_above(rows: Sequence[dict], key: str, threshold: float, smooth: bool = False) -> Fired | None:
    """The first step at which `key` (or its trailing mean) is at or above `threshold`."""
    return _first(rows, key, smooth, lambda value: value >= threshold)


def _first(rows: Sequence[dict], key: str, smooth: bool, fires) -> Fired | None:
    steps, values = _series(rows, key)
    if smooth and len(values):
        w = window(len(values))
        trailing = np.convolve(values, np.ones(w) / w, mode="valid")
        steps, values = steps[w - 1 :], trailing
    for step, value in zip(steps, values, strict=True):
        if fires(value):
            return Fired(step, key, float(value))
    return None


def criteria(rows: Sequence[dict], planned: int | None = None) -> dict[str, Fired | None]:
    """Each criterion's first firing (None when it never fired) for one run's metrics.
    `planned`: the steps the run was set to run (its config's `steps`); the label-free
    rule then uses the window the trainer watched with, so that a run stopped at its
    collapse (`stop_on_collapse`, `assay collapse-step`) is named at the step it stopped."""
    return {
        "reward_accuracy": below(rows, "reward_accuracy"),
        # one step's precision is over few prompts (0 by chance when accuracy is low):
        # the complement uses a trailing mean; the study's criterion stays per step
        "reward_precision": below(rows, "reward_precision", smooth=True),
        "label_free": label_free(rows, w=window(planned) if planned else None),
    }
