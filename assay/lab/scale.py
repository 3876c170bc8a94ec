"""`assay scale`: the same intrinsic-reward training on training sets of several sizes.

The study (its Figure 6 and 7) trained with an intrinsic reward on training sets of
different sizes for the same number of steps: 128 problems or fewer stayed stable (small
KL to the initial model, no collapse), 512 or more collapsed. Its explanation is
*localised overfitting*: on a few problems the model can sharpen on exactly those and
move little elsewhere.

Here each size is one `assay train` run into `OUT/runs/size-<SIZE>/`, with the same
model, reward, steps, seed and validation set; only `train_size` differs (the generated
training tasks of a size are the first SIZE of the same stream). Every run trains all its
steps, so the curves are comparable; collapse is decided afterwards from each run's
metrics by the label-free rule (`assay.training.collapse_rules.label_free`, the rule
`assay collapse-step` stops at). The study's own criterion (reward accuracy below 1%) and
the lab's failure rule (final validation accuracy at least 0.05 below the start) are
reported beside it as extra fields; neither decides `collapsed`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from assay.lab.experiment import (
    ANY,
    FLAG,
    NUMBER,
    TEXT,
    WHOLE,
    Kind,
    LabError,
    Preset,
    Section,
    map_of,
    maybe,
    optional,
    pick_preset,
    pyplot,
    run_progress,
    train_run,
    where,
    write_report,
    write_result,
)
from assay.lab.presets import lab_config
from assay.lab.registry import Experiment, Option, refuse_owned, shared

#: the study's sizes (and the default of `--sizes`)
DEFAULT_SIZES = (32, 128, 512, 2048)

#: `--preset`: the model, sizes, steps and training settings (flags and `--set` override)
PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", "seconds, for tests: the tiny organism, sizes 8 and 64, 11 steps", {
        "model": "organism:tiny",
        "sizes": (8, 64),
        "steps": 11,
        "sets": {"prompts_per_step": "4", "group_size": "4", "val_size": "16",
                 "val_samples": "2", "eval_every": "5", "save_every": "0",
                 "keep_checkpoints": "1"},
    }),
    # 200 updates: 16 prompts x 8 per step is 3,200 prompts, about 100 passes over 32
    # tasks and 1.6 over 2,048; 4 runs of 201 steps take about 4 minutes on 2 cores,
    # which leaves room for building the organism's prior on a clean clone (~4 min).
    "default": Preset("default", "the organism, sizes 32 to 2048, 201 steps", {
        "model": "organism",
        "sizes": DEFAULT_SIZES,
        "steps": 201,
        "sets": {"eval_every": "10", "save_every": "0", "keep_checkpoints": "1"},
    }),
}

STUDY = (
    "with an intrinsic reward and the same steps, training sets of 128 problems or fewer "
    "stayed stable (small KL to the initial model, no collapse) and 512 or more collapsed "
    "(Figures 6 and 7): localised overfitting on a few problems moves the policy little."
)

#: the lab's failure rule: final validation accuracy this far below the start
DECLINE = 0.05

#: what OUT/scale.json holds that the report reads (`assay report` refuses a file without
#: it): per size (its task count, as text), the figures of its run
_SIZE = {"collapsed": FLAG, "collapse_step": maybe(NUMBER),
         **{key: maybe(NUMBER) for key in ("peak_val_accuracy", "final_val_accuracy", "final_kl")},
         "initial_val_accuracy": optional(maybe(NUMBER)), "study_collapse_step": optional(ANY),
         "passes_over_data": optional(ANY), "declined": optional(ANY),
         "collapse_signal": optional(ANY)}
_SIZE_KEY = Kind("a whole number", lambda key: key.isdecimal())
RESULT_SHAPE = {"sizes": where(map_of(_SIZE, key=_SIZE_KEY),
                               lambda sizes: None if sizes else "no sizes"),
                "steps": WHOLE, "reward": TEXT, "model": TEXT}  # the reading names them

#: what scale sets for every run itself, and the flag that changes it instead of `--set`
OWNED = {"model": "--model", "reward": "--reward", "steps": "--steps", "seed": "--seed",
         "out": "--out", "train_size": "--sizes"}


def parse_sizes(text: str) -> list[int]:
    """`32,128,512` -> [32, 128, 512]: positive whole numbers, each once; else one line."""
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise LabError(
                f"--sizes expects positive whole numbers separated by commas, like "
                f"32,128,512, got {text!r}"
            )
        sizes.append(int(part))
    if len(set(sizes)) != len(sizes):
        raise LabError(f"--sizes lists a size twice: {text!r}")
    return sizes


def run_folder(out: Path, size: int) -> Path:
    return out / "runs" / f"size-{size}"


def run(
    *,
    sizes: list[int] | None = None,
    reward: str = "majority_vote",
    model: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    out: str | Path = "runs/scale",
    sets: dict[str, str] | None = None,
    preset: str = "default",
    quiet: bool = False,
) -> dict[str, Any]:
    """Train one run per size (a finished one is kept), then write and return the result."""
    from assay.rewards import RewardError, get_reward
    from assay.training import ConfigError, resolve

    refuse_owned("scale", sets, OWNED)
    chosen = pick_preset(PRESETS, preset, "scale")
    sizes = list(chosen["sizes"] if sizes is None else sizes)
    steps = chosen["steps"] if steps is None else steps
    if not sizes or any(size < 1 for size in sizes):
        raise LabError("--sizes needs at least one positive size")
    if steps < 1:
        raise LabError("--steps must be at least 1")
    try:
        kind = get_reward(reward).kind
    except RewardError as exc:
        raise LabError(str(exc)) from None
    out = Path(out)
    model = model or chosen["model"]
    base = {**chosen["sets"], **(sets or {})}
    flags = {"model": model, "reward": reward, "steps": steps, "seed": seed}
    try:  # the env's own lab settings (countdown: votes compare values)
        base, _ = lab_config(base, flags)
    except ConfigError as exc:
        raise LabError(str(exc)) from None
    configs = {}
    for size in sizes:  # every config checked before anything trains
        try:
            configs[size] = resolve(sets={**base, "train_size": str(size)},
                                    flags={**flags, "out": str(run_folder(out, size))})
        except ConfigError as exc:
            raise LabError(str(exc)) from None
        _check_folder(run_folder(out, size), configs[size].to_dict())

    per_size: dict[str, dict[str, Any]] = {}
    with run_progress("scale", len(sizes), enabled=not quiet) as bar:
        for size in sizes:
            bar.doing(f"{size} tasks")
            summary, rows = train_run(out=run_folder(out, size), flags=flags,
                                      sets={**base, "train_size": str(size)})
            per_size[str(size)] = measure(rows, size=size, steps=steps,
                                          prompts_per_step=configs[size].prompts_per_step)
            entry = per_size[str(size)]
            bar.advance("collapsed" if entry["collapsed"] else "stable")
    first = configs[sizes[0]]
    result = {
        "sizes": per_size,
        "reward": reward,
        "reward_kind": kind,
        "model": model,
        "steps": steps,
        "seed": seed,
        "preset": preset,
        "criterion": "label-free (assay.training.collapse_rules.label_free: entropy, length "
                     "or repetition drift from the run's start), as assay collapse-step",
        "settings": {"val_size": first.val_size, "val_samples": first.val_samples,
                     "eval_every": first.eval_every, "prompts_per_step": first.prompts_per_step,
                     "group_size": first.group_size, "learning_rate": first.learning_rate,
                     "sets": base},
    }
    write_result(out, "scale", result)
    write_report(out, "scale", section(result, out))
    return result


def _check_folder(folder: Path, config: dict[str, Any]) -> None:
    """A run folder left by an earlier `assay scale` is reused only if it was made with the
    same settings (else its figures would be read as this run's)."""
    from assay.training.config import ConfigError, read_yaml

    if not (folder / "config.yaml").exists():
        return
    try:
        before = read_yaml(str(folder / "config.yaml"))
    except ConfigError as exc:
        raise LabError(str(exc)) from None
    ignore = {"progress", "out"}
    differ = sorted(k for k in set(before) | set(config)
                    if k not in ignore and before.get(k) != config.get(k))
    if differ:
        raise LabError(
            f"{folder} holds a run with other settings ({', '.join(differ[:4])}); "
            "choose another --out"
        )


def measure(rows: list[dict[str, Any]], *, size: int, steps: int,
            prompts_per_step: int) -> dict[str, Any]:
    """One size's figures from its run's metrics rows (what the test recomputes)."""
    from assay.lab import collapse
    from assay.lab.summary import summarize

    figures = summarize(rows)
    label_free = collapse.label_free(rows)
    study = collapse.criteria(rows)["reward_accuracy"]
    initial, final = figures["initial_val_accuracy"], figures["final_val_accuracy"]
    return {
        # decided by the label-free rule over the whole run
        "collapse_step": label_free.step if label_free else None,
        "collapsed": label_free is not None,
        "peak_val_accuracy": figures["peak_val_accuracy"],
        "final_val_accuracy": final,
        "final_kl": figures["final_kl"],  # mean `kl` over the last 5 steps
        # extras, for reading the result
        "collapse_signal": label_free.signal if label_free else None,
        "study_collapse_step": study.step if study else None,  # reward accuracy < 1%
        "declined": (initial is not None and final is not None
                     and final <= initial - DECLINE + 1e-12),
        "initial_val_accuracy": initial,
        "peak_step": figures["peak_step"],
        "final_entropy": figures["final_entropy"],
        "max_kl": max((r["kl"] for r in rows if r.get("kl") is not None), default=None),
        "passes_over_data": round(steps * prompts_per_step / size, 2),
        "steps_run": figures["steps"],
        "tokens": figures["tokens"],
        "train_time": figures["wall_time"],
    }


# -- the report ------------------------------------------------------------------------


def _f(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def reading(result: dict[str, Any]) -> list[str]:
    """Plain sentences from the numbers: which sizes collapsed, KL and accuracy by size."""
    sizes = result.get("sizes") or {}
    ordered = sorted(sizes, key=int)
    stable = [s for s in ordered if not sizes[s]["collapsed"]]
    fell = [s for s in ordered if sizes[s]["collapsed"]]
    collapsed = ", ".join(f"{s} (step {sizes[s]['collapse_step']})" for s in fell)
    lines = [
        f"{result.get('reward')} on {result.get('model')}, {result.get('steps')} steps per "
        f"size: stable (no label-free collapse) at {', '.join(stable) or 'no size'}; "
        f"collapsed at {collapsed or 'no size'}."
    ]
    for s in ordered:
        e = sizes[s]
        lines.append(
            f"{s} tasks ({e.get('passes_over_data')} passes): validation accuracy "
            f"{_f(e.get('initial_val_accuracy'))} -> peak {_f(e.get('peak_val_accuracy'))} -> "
            f"final {_f(e.get('final_val_accuracy'))}; final KL {_f(e.get('final_kl'), 3)}"
            + ("; declined (final at least 0.05 below the start)" if e.get("declined") else "")
            + (f"; study's criterion fired at step {e['study_collapse_step']}"
               if e.get("study_collapse_step") is not None else "")
            + "."
        )
    small = [s for s in ordered if int(s) <= 128]
    large = [s for s in ordered if int(s) >= 512]
    if small and large:
        agrees = (not any(sizes[s]["collapsed"] for s in small)
                  and all(sizes[s]["collapsed"] for s in large))
        kl_small = max(sizes[s]["final_kl"] or 0.0 for s in small)
        kl_large = min(sizes[s]["final_kl"] or 0.0 for s in large)
        lines.append(
            ("As the study found: " if agrees else "Unlike the study: ")
            + f"{'no' if not any(sizes[s]['collapsed'] for s in small) else 'some'} size of 128 "
            f"or fewer collapsed, {'every' if all(sizes[s]['collapsed'] for s in large) else 'not every'} "
            f"size of 512 or more did; final KL at most {kl_small:.3f} for the small sets "
            f"against at least {kl_large:.3f} for the large ones."
        )
    return lines


def section(result: dict[str, Any], out: Path) -> Section:
    """The report's part: the reading, the curves per size, a table, the settings."""
    sizes = result.get("sizes") or {}
    ordered = sorted(sizes, key=int)
    figures = []
    curves = _curves(out, ordered)
    if curves:
        figures.append(_plot(curves, sizes, out / "scale.png"))
    return Section(
        title="Training-set size",
        reading=reading(result),
        study=STUDY,
        figures=figures,
        columns=["size", "passes", "collapsed (step)", "val start", "peak", "final",
                 "final KL", "study's criterion", "declined"],
        rows=[[s, str(sizes[s].get("passes_over_data")),
               f"yes ({sizes[s]['collapse_step']}, {sizes[s].get('collapse_signal')})"
               if sizes[s]["collapsed"] else "no",
               _f(sizes[s].get("initial_val_accuracy")), _f(sizes[s]["peak_val_accuracy"]),
               _f(sizes[s]["final_val_accuracy"]), _f(sizes[s]["final_kl"], 3),
               "none" if sizes[s].get("study_collapse_step") is None
               else str(sizes[s]["study_collapse_step"]),
               "yes" if sizes[s].get("declined") else "no"] for s in ordered],
        settings={k: result.get(k) for k in ("model", "reward", "steps", "seed", "preset",
                                             "criterion", "settings")},
    )


def _curves(out: Path, sizes: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each size's metric rows (a size whose folder is gone is left out of the plot)."""
    from assay.training.tracking import read_metrics

    curves = {}
    for s in sizes:
        try:
            curves[s] = read_metrics(run_folder(out, int(s)))
        except Exception:  # noqa: BLE001 - the result alone still renders
            continue
    return {s: rows for s, rows in curves.items() if rows}


def _plot(curves: dict[str, list[dict[str, Any]]], sizes: dict[str, Any], path: Path) -> Path:
    import numpy as np

    from assay.lab.plots import SMOOTH, _smooth

    plt = pyplot()
    fig, (acc, kl) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(curves)))
    for colour, (s, rows) in zip(colours, curves.items(), strict=True):
        evals = [(r["step"], r["val_accuracy"]) for r in rows if r.get("val_accuracy") is not None]
        if evals:
            acc.plot(*zip(*evals, strict=True), marker="o", markersize=3, color=colour,
                     label=f"{s} tasks")
        kls = [(r["step"], r["kl"]) for r in rows if r.get("kl") is not None]
        if kls:
            steps, values = zip(*kls, strict=True)
            kl.plot(steps, _smooth(np.array(values, dtype=float), SMOOTH), color=colour,
                    label=f"{s} tasks")
        step = sizes[s].get("collapse_step")
        if step is not None:
            kl.axvline(step, color=colour, linestyle=":", linewidth=1)
    kl.set_yscale("symlog", linthresh=0.1)  # one step's k3 KL can spike 100x: keep the rest visible
    kl.set_ylim(bottom=0)
    acc.set_title("Validation accuracy (sampled)")
    kl.set_title(f"KL to the initial model (trailing mean of {SMOOTH}; dotted: collapse)")
    for ax in (acc, kl):
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


EXPERIMENT = Experiment(
    name="scale",
    summary="Train the same way on training sets of each size, for the same steps; write "
            "OUT/scale.json and OUT/report.html (docs/lab.md).",
    run=run,
    presets=PRESETS,
    options=(
        Option("sizes", "Training-set sizes, comma separated (default: the preset's, "
               "32,128,512,2048).", metavar="N,N,...", parse=parse_sizes),
        shared("reward", help="The reward of every run."),
        shared("model", help="organism[:preset] or a local HF model folder (default: the "
                             "preset's)."),
        shared("steps", help="Steps of every run (default: the preset's, 201)."),
        shared("seed", help="Random seed of every run."),
        shared("sets", help="Any `assay train` option, for every run."),
    ),
    section=section,
    owned=OWNED,
    shape=RESULT_SHAPE,
)
