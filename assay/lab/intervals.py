"""95% intervals for accuracies measured on a finite set of tasks.

An accuracy on 64 or 128 tasks moves by several points when only the choice of tasks
changes; a figure without its interval cannot say whether a change is real. The interval
here is the percentile bootstrap over tasks: resample the tasks with replacement, take
the mean each time, keep the middle 95%. It makes no assumption on the shape of the
per-task values (0/1 verdicts, pass@k estimates, means over samples alike).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: resamples per interval: the 2.5% and 97.5% points move by well under 0.01 beyond this
RESAMPLES = 2_000
LEVEL = 0.95


def bootstrap_interval(
    values: Sequence[float], *, seed: int = 0, resamples: int = RESAMPLES, level: float = LEVEL
) -> tuple[float, float]:
    """The percentile-bootstrap interval of the mean of `values` (one value per task).

    Deterministic for a given `seed`. No values: (nan, nan); one value: that value twice.
    """
    x = np.asarray(values, dtype=float)  # (T,)
    if x.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, x.size, size=(resamples, x.size))  # (R, T) task indices
    return _middle(x[picks].mean(axis=1), level)  # the means of the resamples: (R,)


def _middle(replicates: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval: the middle `level` of the replicates."""
    tail = (1.0 - level) / 2
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return float(low), float(high)


def mean_with_interval(values: Sequence[float], *, seed: int = 0) -> dict[str, float]:
    """`{"mean", "low", "high"}` of per-task values (the JSON shape every interval takes)."""
    low, high = bootstrap_interval(values, seed=seed)
    mean = float(np.mean(values)) if len(values) else float("nan")
    return {"mean": mean, "low": low, "high": high}


# -- a run's validation curve: paired intervals over the same tasks ------------------------

def curve_replicates(
    sampled: np.ndarray, greedy: np.ndarray | None, *, seed: int = 0, resamples: int = RESAMPLES
) -> dict[str, np.ndarray]:
    """Bootstrap replicates of a run's validation figures, `{name: (R,)}`: the sampled
    accuracy's start, peak and end, and with `greedy` its start and end, plus the paired
    differences the lab's verdicts read.

    `sampled` is (S, T): each validation step's per-task accuracy, the same T tasks at
    every step; `greedy` the same shape or None. One resample of the tasks serves every
    step, so the differences are paired (a hard task stays hard at both ends). The peak
    is chosen again in each resample (the best step of that resample), so its interval
    carries the choice of the best of S validations instead of ignoring it.
    `change` = end - start, `rise` = peak - start, `fall` = peak - end.
    """
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, sampled.shape[1], size=(resamples, sampled.shape[1]))  # (R, T)
    curve = sampled[:, picks].mean(axis=2)  # (S, R): each step's accuracy in each resample
    peak = curve.max(axis=0)  # (R,)
    out = {"start": curve[0], "peak": peak, "end": curve[-1], "change": curve[-1] - curve[0],
           "rise": peak - curve[0], "fall": peak - curve[-1]}
    if greedy is not None:
        g = greedy[:, picks].mean(axis=2)  # (S, R)
        out.update(greedy_start=g[0], greedy_end=g[-1], greedy_change=g[-1] - g[0])
    return out


def over_seeds(per_seed: list[np.ndarray], *, seed: int = 0) -> np.ndarray:
    """Replicates of the mean over seeds: `per_seed` holds each seed's (R,) task-bootstrap
    replicates; each replicate draws the seeds with replacement, then averages their
    replicates. With one seed it is that seed's replicates; with few seeds the spread
    between seeds is only roughly captured (3 distinct draws for 2 seeds)."""
    reps = np.stack(per_seed)  # (K, R)
    if len(per_seed) == 1:
        return reps[0]
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, reps.shape[0], size=(reps.shape[1], reps.shape[0]))  # (R, K)
    return reps[draw, np.arange(reps.shape[1])[:, None]].mean(axis=1)  # (R,)


def percentile_interval(replicates: np.ndarray, level: float = LEVEL) -> list[float]:
    """[low, high]: the middle `level` of bootstrap replicates, to 4 decimals."""
    low, high = _middle(replicates, level)
    return [round(low, 4), round(high, 4)]
