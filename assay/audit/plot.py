"""The rescore figure (matplotlib, Agg backend, in the style of the lab's report): each
reward's agreement with the verifier, step by step, one colour per reward."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def draw_rescore(result: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Write the accuracy-per-step figure of a `rescore` result to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker below)

    cmap = matplotlib.colormaps["tab10"]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for i, (name, entry) in enumerate(result["rewards"].items()):
        points = [(p["step"], p["accuracy"]) for p in entry["per_step"]
                  if p["accuracy"] is not None and math.isfinite(p["accuracy"])]
        if points:
            steps, accuracy = zip(*points, strict=True)
            ax.plot(steps, accuracy, "-o" if len(points) < 20 else "-", color=cmap(i % 10),
                    label=f"{name} (mean {entry['accuracy']:.2f})", linewidth=1.8, markersize=3)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="a fair coin (expected)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # steps are whole
    ax.set_title(title or "Agreement with the verifier on the run's own rollouts", fontsize=11)
    ax.set_xlabel("step")
    ax.set_ylabel("agreement with the verifier")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
