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

from pathlib import Path
from typing import Any

from assay.lab.experiment import (
    NUMBER,
    LabError,
    Preset,
    Section,
    maybe,
    optional,
    pick_preset,
    pyplot,
    train_run,
    where,
    write_report,
    write_result,
)
from assay.lab.registry import Experiment, Option, refuse_owned, shared

#: `--preset`: the model, the step limit and the training settings (flags override them)
PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", "seconds, for tests: the tiny organism, at most 40 steps", {
        "model": "organism:tiny",
        "max_steps": 40,
        "sets": {"prompts_per_step": "8", "val_size": "16", "eval_every": "10"},
    }),
    "default": Preset("default", "the organism, at most 300 steps",
                      {"model": "organism", "max_steps": 300, "sets": {}}),
}

STUDY = (
    "the Model Collapse Step (the step at which reward accuracy falls below 1% under "
    "intrinsic training) ranked 7 models like their gain from supervised RL, at 5.6x fewer "
    "tokens (1.19B against 6.66B); assay decides the step without labels (entropy, length "
    "or repetition drift), since reward accuracy needs them."
)


def _diagnostics_problem(diag: dict[str, Any]) -> str | None:
    if diag.get("initial_val_accuracy") is not None and diag.get("final_val_accuracy") is None:
        return "initial_val_accuracy is a number but final_val_accuracy is null"
    return None


#: what OUT/collapse_step.json holds that the report reads (`assay report` refuses a file
#: without it)
RESULT_SHAPE = {
    "collapse_step": maybe(NUMBER),
    "tokens": NUMBER,
    "diagnostics": optional(maybe(where(
        {key: optional(maybe(NUMBER)) for key in ("initial_val_accuracy", "final_val_accuracy")},
        _diagnostics_problem))),
}

#: what collapse-step sets for its run itself, and the flag that changes it instead of
#: `--set` (or why none does)
OWNED = {"model": "--model", "env": "--env", "reward": "--reward", "steps": "--max-steps",
         "seed": "--seed", "out": "--out",
         "collapse_signal": "its run always stops at the label-free collapse",
         "stop_on_collapse": "its run always stops at the label-free collapse"}


def run(
    *,
    model: str | None = None,
    env: str | None = None,
    reward: str = "majority_vote",
    max_steps: int | None = None,
    out: str | Path = "runs/collapse-step",
    seed: int = 0,
    sets: dict[str, str] | None = None,
    preset: str = "default",
    quiet: bool = False,
) -> dict[str, Any]:
    """Train until the label-free collapse (or `max_steps`); write and return the result."""
    from assay.rewards import get_reward

    refuse_owned("collapse-step", sets, OWNED)
    chosen = pick_preset(PRESETS, preset, "collapse-step")
    model = model or chosen["model"]
    max_steps = chosen["max_steps"] if max_steps is None else max_steps
    if max_steps < 1:
        raise LabError("--max-steps must be at least 1")
    kind = get_reward(reward).kind
    if kind != "intrinsic":
        raise LabError(
            f"reward {reward!r} is {kind}: the collapse step is measured with an intrinsic "
            "(label-free) reward such as majority_vote or self_certainty"
        )
    out = Path(out)
    flags = {"model": model, "env": env, "reward": reward, "steps": max_steps, "seed": seed}
    # the run is read back when it is done, continued when it was stopped (the same command
    # again), and refused when it was made with other settings
    summary, rows = train_run(
        out=out / "run", flags=flags, quiet=quiet,
        sets={**chosen["sets"], **(sets or {}), "collapse_signal": "label_free",
              "stop_on_collapse": "true"},
    )
    result = measure(rows, summary, model=model, reward=reward, max_steps=max_steps)
    result["preset"] = preset
    write_result(out, "collapse_step", result)
    write_report(out, "collapse_step", section(result, out))
    return result


def measure(
    rows: list[dict[str, Any]], summary: dict[str, Any], *, model: str, reward: str,
    max_steps: int,
) -> dict[str, Any]:
    """The result of a run that stopped at its collapse (or ran `max_steps`)."""
    collapse = summary["collapse"]
    step = collapse["step"] if collapse else None
    upto = [r for r in rows if step is None or r["step"] <= step]
    evals = [r for r in rows if r.get("val_accuracy") is not None]
    return {
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


def section(result: dict[str, Any], out: Path) -> Section:
    """The report's part: the step, its criterion and cost, the run's statistics plotted."""
    from assay.training.tracking import read_metrics

    step, tokens = result.get("collapse_step"), result.get("tokens")
    diag = result.get("diagnostics") or {}
    if step is None:
        said = (f"{result.get('model')} did not collapse under {result.get('reward')} within "
                f"{result.get('max_steps')} steps ({tokens:,} tokens): its confidence kept "
                "tracking something the rule does not see drift in.")
    else:
        said = (f"{result.get('model')} collapsed under {result.get('reward')} at step {step} "
                f"({result.get('criterion')}), after {tokens:,} tokens of training.")
    reading = [said]
    if diag.get("initial_val_accuracy") is not None:
        reading.append(
            f"Ground truth, reported and never used to decide: validation accuracy "
            f"{diag['initial_val_accuracy']:.2f} at the start, {diag['final_val_accuracy']:.2f} "
            "at the last evaluation."
        )
    figures = []
    try:
        rows = read_metrics(out / "run")
    except Exception:  # the result alone still renders (the run folder may be gone)
        rows = []
    if rows:
        figures.append(_plot(rows, step, out / "collapse_step.png"))
    return Section(
        title="Model Collapse Step",
        reading=reading,
        study=STUDY,
        figures=figures,
        columns=["model", "reward", "collapse step", "criterion", "tokens"],
        rows=[[str(result.get("model")), str(result.get("reward")),
               "none" if step is None else str(step), str(result.get("criterion")),
               f"{tokens:,}"]],
        settings={k: result.get(k) for k in ("model", "reward", "max_steps", "steps_run",
                                             "preset")},
    )


def _plot(rows: list[dict[str, Any]], step: int | None, path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=100)
    for ax, key, title in zip(axes, ("entropy", "completion_length", "val_accuracy"),
                              ("token entropy", "completion length", "validation accuracy"),
                              strict=True):
        pairs = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if pairs:
            ax.plot(*zip(*pairs, strict=True), marker="o" if key == "val_accuracy" else None)
        if step is not None:
            ax.axvline(step, color="crimson", linestyle="--", label="collapse step")
        ax.set_title(title)
        ax.set_xlabel("step")
    if step is not None:
        axes[0].legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


EXPERIMENT = Experiment(
    name="collapse_step",
    summary="Train with an intrinsic reward until the Model Collapse Step, decided without "
            "labels; write OUT/collapse_step.json and OUT/report.html (docs/lab.md).",
    run=run,
    presets=PRESETS,
    options=(
        shared("model"),
        shared("env"),
        shared("reward"),
        Option("max_steps", "Give up (collapse_step null) after this many steps (default: the "
               "preset's, 300).", type=int),
        shared("seed"),
        shared("sets", help="Any `assay train` option."),
    ),
    section=section,
    owned=OWNED,
    shape=RESULT_SHAPE,
)
