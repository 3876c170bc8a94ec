"""Where a run is going, from its first steps: the entropy–performance law.

Cui et al. (2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning Language
Models") found that, over RL training without entropy intervention, validation accuracy R
and policy entropy H follow R = -a * exp(H) + b: the policy trades entropy for accuracy
until the entropy is spent, so the ceiling is R(H = 0) = b - a. Fitted on a run's first
steps, the law predicts the accuracy the run can reach; the lab reports that prediction
beside what the run did (its peak and its end), and docs/results.md measures its error
over many runs.

Here R is the validation accuracy (mean over samples) at each validation step and H the
mean token entropy of that step's rollouts, both as the trainer logs them. The fit is
least squares, linear in exp(H).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: the share of a run's steps the fit may read (the first half: a prediction, not a summary)
FIT_SHARE = 0.5
#: the fewest validations a fit needs (three points for two parameters, one to spare)
MIN_POINTS = 3


def points(rows: Sequence[dict[str, Any]], upto: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(H, R) at each validation step up to `upto` (all when None) with both logged."""
    pairs = [(r["entropy"], r["val_accuracy"]) for r in rows
             if r.get("val_accuracy") is not None and r.get("entropy") is not None
             and (upto is None or r["step"] <= upto)]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    h, acc = np.asarray(pairs, dtype=float).T  # (P,), (P,)
    return h, acc


def fit(h: np.ndarray, r: np.ndarray) -> tuple[float, float] | None:
    """(a, b) of R = -a * exp(H) + b by least squares; None with fewer than MIN_POINTS
    points, when the entropy did not move (exp(H) constant: no slope to fit), or when a
    value is not a finite float (a hand-edited or corrupt metrics file: exp(H) past
    float range, NaN), on which the solver would fail."""
    if len(h) < MIN_POINTS:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        x = np.exp(h)  # (P,)
    if not (np.isfinite(x).all() and np.isfinite(r).all()) or np.ptp(x) < 1e-9:
        return None
    design = np.stack([-x, np.ones_like(x)], axis=1)  # (P, 2): R = design @ (a, b)
    (a, b), *_ = np.linalg.lstsq(design, r, rcond=None)
    return float(a), float(b)


def predict(rows: Sequence[dict[str, Any]], share: float = FIT_SHARE) -> dict[str, Any] | None:
    """The law fitted on the first `share` of a run's steps and its predicted ceiling
    (b - a, clipped to [0, 1]) beside the run's achieved peak and end; None when the run
    has too few validations in that part or its entropy did not move."""
    if not rows:
        return None
    last = max(r["step"] for r in rows)
    upto = max(1, int(last * share))
    h, seen = points(rows, upto)
    params = fit(h, seen)
    if params is None:
        return None
    a, b = params
    _, achieved = points(rows)
    ceiling = float(np.clip(b - a, 0.0, 1.0))
    return {
        "a": round(a, 6),
        "b": round(b, 6),
        "ceiling": round(ceiling, 4),
        "fit_steps": upto,
        "fit_points": int(len(seen)),
        # the naive forecast to beat: the run ends where its first half left it
        "last_seen": float(seen[-1]),
        "achieved_peak": float(achieved.max()),
        "achieved_end": float(achieved[-1]),
        "error_end": round(ceiling - float(achieved[-1]), 4),  # > 0: predicted above the end
    }
