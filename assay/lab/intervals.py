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
    means = x[picks].mean(axis=1)  # (R,)
    tail = (1.0 - level) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def mean_with_interval(values: Sequence[float], *, seed: int = 0) -> dict[str, float]:
    """`{"mean", "low", "high"}` of per-task values (the JSON shape every interval takes)."""
    low, high = bootstrap_interval(values, seed=seed)
    mean = float(np.mean(values)) if len(values) else float("nan")
    return {"mean": mean, "low": low, "high": high}
