"""`assay collapse-step`: train with an intrinsic reward until the Model Collapse Step.

The study's use of the Model Collapse Step is as a cheap, label-free gauge of a model's
prior: the sooner intrinsic training collapses, the less the model's confidence tracks
correctness (and the less it gains from supervised RL). Here the step is decided by the
label-free rule (`assay.training.collapse_rules`: entropy, length or repetition drift
from the start), which the trainer watches every step and stops at; ground truth is
only reported beside it (validation accuracy, reward accuracy), never used to decide.

The run is an `assay train` folder (`OUT/run/`), so the lab's report, `assay rescore`
and `--resume` work on it; `OUT/collapse_step.json` holds the answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from assay.errors import AssayError


class CollapseStepError(AssayError, ValueError):
    """A usage problem (a reward that needs labels, a bad value): one line."""


def run(
    *,
    model: str = "organism",
    env: str | None = None,
    reward: str = "majority_vote",
    max_steps: int = 300,
    out: str | Path = "runs/collapse-step",
    seed: int = 0,
    sets: dict[str, str] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train until the label-free collapse (or `max_steps`); write and return the result."""
    from assay.rewards import get_reward
    from assay.training import Trainer, resolve
    from assay.training.tracking import read_metrics

    if max_steps < 1:
        raise CollapseStepError("--max-steps must be at least 1")
    kind = get_reward(reward).kind
    if kind != "intrinsic":
        raise CollapseStepError(
            f"reward {reward!r} is {kind}: the collapse step is measured with an intrinsic "
            "(label-free) reward such as majority_vote or self_certainty"
        )
    out = Path(out)
    flags = {"model": model, "env": env, "reward": reward, "steps": max_steps, "seed": seed,
             "out": str(out / "run")}
    config = resolve(
        sets={**(sets or {}), "collapse_signal": "label_free", "stop_on_collapse": "true"},
        flags=flags,
    )
    trainer = Trainer(config, quiet=quiet)
    summary = trainer.train()
    rows = read_metrics(out / "run")
    collapse = summary["collapse"]
    step = collapse["step"] if collapse else None
    upto = [r for r in rows if step is None or r["step"] <= step]
    evals = [r for r in rows if r.get("val_accuracy") is not None]
    result = {
        "model": model,
        "reward": reward,
        "collapse_step": step,
        "criterion": (
            f"label-free: {collapse['signal'].partition(':')[2]} drift (assay.training.collapse_rules)"
            if collapse else None
        ),
        "tokens": int(sum(r.get("tokens") or 0 for r in upto)),
        "max_steps": max_steps,
        "steps_run": summary["steps"],
        # ground truth, for reading the result only: never used to decide the step
        "diagnostics": {
            "initial_val_accuracy": evals[0]["val_accuracy"] if evals else None,
            "final_val_accuracy": evals[-1]["val_accuracy"] if evals else None,
            "reward_accuracy_at_collapse": (upto[-1].get("reward_accuracy") if upto else None),
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "collapse_step.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
