"""Spearman's rank correlation and its exact permutation p-value, for a handful of points.

The zoo ranks a few priors (at most 9) by two figures; with so few points the exact
p-value (every ordering counted) is cheap and assumes nothing about the figures' shape.
"""

from __future__ import annotations

import itertools
import math


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def _pearson(x: list[float], y: list[float]) -> float | None:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:  # one variable does not vary: no correlation is defined
        return None
    return sxy / math.sqrt(sxx * syy)


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (Pearson's on tie-averaged ranks); None when undefined."""
    if len(x) != len(y) or len(x) < 2:
        return None
    return _pearson(ranks(x), ranks(y))


def permutation_p(x: list[float], y: list[float], limit: int = 9) -> float | None:
    """Two-sided exact p-value of Spearman's rho: the share of the orderings of y whose
    |rho| is at least the observed one. None above `limit` points (too many orderings)."""
    rho = spearman(x, y)
    if rho is None or len(x) > limit:
        return None
    rx, ry = ranks(x), ranks(y)
    hits = total = 0
    for perm in itertools.permutations(ry):
        r = _pearson(rx, list(perm))
        total += 1
        hits += r is not None and abs(r) >= abs(rho) - 1e-12
    return hits / total
