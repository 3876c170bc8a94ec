"""The report's figures (matplotlib, Agg backend): one PNG per metric against step, one
colour per reward, the mean over seeds as a line and the seeds' range as a band.

Per-step metrics are smoothed with a trailing mean over `SMOOTH` steps (validation
accuracy, measured every `eval_every` steps, is not smoothed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from assay.lab.summary import Run

SMOOTH = 5

#: file name -> (title, y label, metric keys (solid, then dashed), smoothed)
FIGURES: dict[str, tuple[str, str, tuple[str, ...], bool]] = {
    "accuracy": (
        "Validation accuracy (sampled mean@n solid, greedy dashed)",
        "accuracy",
        ("val_accuracy", "val_greedy_accuracy"),
        False,
    ),
    "reward_accuracy": (
        "Reward accuracy (study's definition solid, reward precision dashed)",
        "agreement with ground truth",
        ("reward_accuracy", "reward_precision"),
        True,
    ),
    "entropy": ("Token entropy of the policy", "nats per token", ("entropy",), True),
    "length": ("Completion length", "tokens", ("completion_length",), True),
    "kl": ("KL to the initial model (k3)", "KL", ("kl",), True),
}


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or len(values) < 2:
        return values
    out = np.empty_like(values)
    for i in range(len(values)):
        out[i] = np.nanmean(values[max(0, i - width + 1) : i + 1])
    return out


def series(runs: list[Run], key: str, smooth: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values[seed, step]) on the steps every seed logged `key`; None if none did."""
    per_run = []
    for run in runs:
        pairs = {r["step"]: r[key] for r in run.rows if r.get(key) is not None}
        if pairs:
            per_run.append(pairs)
    if not per_run:
        return None
    steps = sorted(set.intersection(*(set(p) for p in per_run)))
    if not steps:
        return None
    values = np.array([[p[s] for s in steps] for p in per_run], dtype=float)
    if smooth:
        values = np.array([_smooth(v, SMOOTH) for v in values])
    return np.array(steps), values


def _literal(label: str) -> str:
    """`label` as matplotlib shows it verbatim: a reward or folder name with two `$` would
    otherwise be parsed as maths (and one that is not valid maths fails the whole figure)."""
    return label.replace("$", r"\$")


def colours(labels: list[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def draw(
    groups: dict[str, list[Run]], folder: str | Path, collapse_steps: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write every figure to `folder/<name>.png`; returns name -> path.

    `collapse_steps` (label -> step or None) marks each reward's collapse step with an x
    on the accuracy figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    palette = colours(list(groups))
    written = {}
    for name, (title, ylabel, keys, smooth) in FIGURES.items():
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
        drawn = False
        for label, runs in groups.items():
            for style, key in zip(("-", "--"), keys, strict=False):
                data = series(runs, key, smooth)
                if data is None:
                    continue
                steps, values = data
                mean = values.mean(axis=0)
                ax.plot(
                    steps,
                    mean,
                    style,
                    color=palette[label],
                    label=_literal(label) if style == "-" else None,
                    linewidth=1.8 if style == "-" else 1.2,
                )
                if len(values) > 1 and style == "-":
                    ax.fill_between(
                        steps, values.min(axis=0), values.max(axis=0),
                        color=palette[label], alpha=0.15, linewidth=0,
                    )
                if name == "accuracy" and style == "-" and collapse_steps:
                    step = collapse_steps.get(label)
                    if step is not None:
                        ax.plot([step], [np.interp(step, steps, mean)], "x",
                                color=palette[label], markersize=10, markeredgewidth=2)
                drawn = True
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8, loc="best", frameon=False)
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
        fig.tight_layout()
        path = folder / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written[name] = path
    return written
