"""The label-free collapse rule, shared by the trainer (to stop a run at it) and the lab
(to report it after the fact): one definition, so both name the same step.

The first step at which a trailing mean of the policy's own statistics has drifted past a
fixed bound from the run's start window: token entropy below `ENTROPY_FLOOR` of its start
(sharpened to near-determinism), completion length changed by more than `LENGTH_DRIFT` of
its start (length collapse, either way), or the 4-gram repetition rate up by more than
`REPETITION_RISE` (repetition collapse). No labels are used.

The bounds were fixed before the lab's comparisons were run and are not tuned to them;
docs/lab.md says what they catch and miss. With a fixed window the rule only looks back,
so the step it names on a prefix of a run is the step it names on the whole run: the
trainer can stop there and the lab's report of the full run agrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: label-free: token entropy below this fraction of its start
ENTROPY_FLOOR = 0.25
#: label-free: completion length changed by more than this fraction of its start
LENGTH_DRIFT = 0.25
#: label-free: 4-gram repetition rate up by more than this (absolute)
REPETITION_RISE = 0.10
#: steps in the start window and in the trailing mean (fewer for short runs)
WINDOW = 10
#: each signal's bound, as the collapse records it
BOUNDS = {"entropy": ENTROPY_FLOOR, "completion_length": LENGTH_DRIFT,
          "repetition_rate": REPETITION_RISE}


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


def series(rows: Sequence[dict], key: str) -> tuple[list[int], np.ndarray]:
    """(steps, values) of `key` over the rows that have it."""
    pairs = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return [s for s, _ in pairs], np.array([v for _, v in pairs], dtype=float)


def label_free(rows: Sequence[dict], w: int | None = None) -> Fired | None:
    """The first step at which a trailing mean drifted past a bound from the start window.

    `w` is the window; by default `window(len(rows of the signal))`, which suits a finished
    run. A caller that watches a run as it grows passes a fixed one (`window(max_steps)`).
    """
    first: Fired | None = None
    for key, test in (
        ("entropy", lambda now, start: start > 0 and now < ENTROPY_FLOOR * start),
        ("completion_length", lambda now, start: start > 0 and abs(now / start - 1) > LENGTH_DRIFT),
        ("repetition_rate", lambda now, start: now - start > REPETITION_RISE),
    ):
        steps, values = series(rows, key)
        k = w if w is not None else window(len(values))
        if len(values) < 2 * k:
            continue
        start = float(values[:k].mean())
        trailing = np.convolve(values, np.ones(k) / k, mode="valid")  # trailing[i] ends at i+k-1
        for i in range(k, len(trailing)):  # windows that do not overlap the start window
            if test(float(trailing[i]), start):
                if first is None or steps[i + k - 1] < first.step:
                    first = Fired(steps[i + k - 1], key, float(trailing[i]))
                break
    return first
