"""Failure modes, classified from a run's metrics (never from what a reward "should" do).

A run failed when its final validation accuracy is below its initial one beyond noise:
the 95% interval of the paired change (end - start, over the same validation tasks) lies
below zero. A run logged without per-task figures falls back to a fixed rule: at least
`DECLINE` below. A failed run's mode is read from how its own statistics moved between the start and
the end window (see `assay.lab.collapse` for the windows):

- "repetition": the 4-gram repetition rate rose by more than `collapse.REPETITION_RISE`;
- "length": completion length changed by more than `collapse.LENGTH_DRIFT` of its start;
- "gradual": it declined with neither (the study's mode for majority vote and
  self-certainty).

A run that did not fail has mode None.
"""

from __future__ import annotations

from collections.abc import Sequence

from assay.lab import collapse

#: a run failed when final validation accuracy <= initial - DECLINE
DECLINE = 0.05
MODES = (None, "gradual", "length", "repetition")


def failed(rows: Sequence[dict]) -> bool:
    evals = [r["val_accuracy"] for r in rows if r.get("val_accuracy") is not None]
    return len(evals) >= 2 and evals[-1] <= evals[0] - DECLINE + 1e-12


def drift(rows: Sequence[dict], key: str) -> tuple[float, float] | None:
    """(start, end): the means of `key` over the first and the last window of the run."""
    _, values = collapse._series(rows, key)
    if len(values) == 0:
        return None
    w = collapse.window(len(values))
    return float(values[:w].mean()), float(values[-w:].mean())


def classify(rows: Sequence[dict], declined: bool | None = None) -> str | None:
    """None (no failure), "repetition", "length" or "gradual". `declined`: whether the
    run's paired interval says it declined; None reads the fixed `DECLINE` rule instead."""
    if not (failed(rows) if declined is None else declined):
        return None
    repetition = drift(rows, "repetition_rate")
    if repetition and repetition[1] - repetition[0] > collapse.REPETITION_RISE:
        return "repetition"
    length = drift(rows, "completion_length")
    if length and length[0] > 0 and abs(length[1] / length[0] - 1) > collapse.LENGTH_DRIFT:
        return "length"
    return "gradual"
