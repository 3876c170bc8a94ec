"""`assay ttt`: test-time training, intrinsic-reward training on the evaluation tasks
themselves (no labels), against the same training on tasks it is not evaluated on.

The study found intrinsic rewards safe and useful at this scale: on a small set of tasks
the policy overfits locally, stays near its start, and sharpens the answers it already
favoured on exactly the tasks it is measured on (its Figure 8). Here:

* the evaluation tasks are a generated validation set (`val_size` tasks, the seed the
  trainer uses for validation), written to `OUT/tasks/eval.jsonl`;
* run `OUT/runs/ttt/` trains on exactly those tasks (`train_file` = `val_file`);
* run `OUT/runs/disjoint/` trains on as many generated tasks that share none of their
  prompts (`OUT/tasks/train.jsonl`), with the same steps, seed and settings;
* both validate on the evaluation tasks before the first update and after the last
  counted one (the trainer runs `steps + 1` steps and validates before step
  `steps + 1`, so `after` measures the policy after exactly `steps` updates).

Labels are never used to train: the reward must be intrinsic. Ground truth only scores
the validation, as it does in any run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from assay.lab.experiment import (
    NUMBER,
    LabError,
    Preset,
    Section,
    list_of,
    pick_preset,
    pyplot,
    run_progress,
    train_run,
    write_report,
    write_result,
)
from assay.lab.registry import Experiment, refuse_owned, shared

#: `--preset`: model, counted updates and training settings (flags override them)
PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", "seconds, for tests: the tiny organism, 4 updates on 16 tasks",
                    {"model": "organism:tiny", "steps": 4,
                     "sets": {"val_size": "16", "val_samples": "2", "prompts_per_step": "4",
                              "group_size": "4", "eval_every": "2"}}),
    "default": Preset("default", "the organism, 40 updates on 128 tasks",
                      {"model": "organism", "steps": 40,
                       "sets": {"val_size": "128", "val_samples": "8", "eval_every": "10"}}),
}
RUN_SETS = {"save_every": "0", "keep_checkpoints": "1", "progress": "false"}
#: the trainer's own seed offset for generated validation tasks (`Trainer.val_tasks`)
VAL_SEED = 7_919
RUNS = ("ttt", "disjoint")
#: what ttt sets for both runs itself, and the flag that changes it instead of `--set` (or
#: why none does)
OWNED = {"model": "--model", "env": "--env", "reward": "--reward", "steps": "--steps",
         "seed": "--seed", "out": "--out",
         "train_file": "it generates the tasks both runs train on (how many: --set val_size=N)",
         "val_file": "it generates the evaluation tasks (how many: --set val_size=N)"}

#: what OUT/ttt.json holds that the report reads (`assay report` refuses a file without it)
_POINT = {"updates": NUMBER, "val_accuracy": NUMBER, "val_greedy_accuracy": NUMBER}
RESULT_SHAPE = {
    **{key: NUMBER for key in ("before", "after", "after_disjoint", "before_greedy",
                               "after_greedy", "after_disjoint_greedy")},
    "curves": {name: list_of(_POINT) for name in RUNS},
}

STUDY = (
    "test-time training with intrinsic rewards (training on the evaluation set itself, "
    "no labels) is safe and helps: on a small task set the policy overfits locally, stays "
    "close to its start and does not collapse."
)


def run(
    *,
    model: str | None = None,
    env: str | None = None,
    reward: str = "majority_vote",
    steps: int | None = None,
    out: str | Path = "runs/ttt",
    seed: int = 0,
    sets: dict[str, str] | None = None,
    preset: str = "default",
    jobs: int | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train both runs; write and return `OUT/ttt.json`."""
    from assay.lab.runs import check_settings, require_intrinsic, resolve_runs
    from assay.lab.workers import jobs_for, run_all
    from assay.training import ConfigError, resolve
    from assay.training.policy import resolve_model_path
    from assay.training.tracking import read_metrics

    refuse_owned("ttt", sets, OWNED)
    chosen = pick_preset(PRESETS, preset, "ttt")
    model = model or chosen["model"]
    steps = chosen["steps"] if steps is None else steps
    if steps < 1:
        raise LabError("ttt: --steps must be at least 1")
    if jobs is not None and jobs < 1:
        raise LabError("ttt: --jobs must be at least 1")
    require_intrinsic(reward, "ttt")
    out = Path(out)
    run_sets = run_settings(chosen["sets"], steps, sets or {})
    flags = {"model": model, "env": env, "reward": reward, "steps": steps + 1, "seed": seed}
    run_sets, config, environment = resolve_runs("ttt", run_sets, flags)
    if config.eval_every < 1 or steps % config.eval_every:
        raise LabError(
            f"ttt: eval_every ({config.eval_every}) must divide --steps ({steps}), so that "
            "the last evaluation comes after the last counted update"
        )
    try:
        evaluation, training = task_sets(environment, config.val_size, seed)
    except NotImplementedError:
        raise LabError(f"ttt: env {config.env!r} does not generate tasks") from None
    finally:
        environment.close()
    files = {"eval": out / "tasks" / "eval.jsonl", "train": out / "tasks" / "train.jsonl"}
    for name, tasks in (("eval", evaluation), ("train", training)):
        write_tasks(files[name], tasks)
    train_files = {"ttt": files["eval"], "disjoint": files["train"]}
    calls = []
    for name in RUNS:
        run_dir = out / "runs" / name
        these = {**run_sets, "train_file": str(train_files[name]), "val_file": str(files["eval"])}
        try:
            check_settings(run_dir, resolve(sets=these, flags={**flags, "out": str(run_dir)}))
        except ConfigError as exc:
            raise LabError(f"ttt: {exc}") from None
        calls.append({"out": str(run_dir), "flags": flags, "sets": these})
    resolve_model_path(config.model, config.prior, quiet=quiet)  # built once, here
    start = time.perf_counter()
    jobs = jobs or jobs_for(config.model, config.device)
    with run_progress("ttt", len(calls), enabled=not quiet) as bar:
        bar.doing(" and ".join(RUNS))
        run_all(train_one, calls, jobs=jobs, done=lambda i, _: bar.advance(f"{RUNS[i]} done"))
    curves = {name: evaluations(read_metrics(out / "runs" / name)) for name in RUNS}
    for name in RUNS:
        if not curves[name] or curves[name][-1]["updates"] != steps:
            raise LabError(f"ttt: {out / 'runs' / name} has no evaluation after {steps} updates")
    result = {
        "model": config.model,
        "env": config.env,
        "reward": reward,
        "preset": preset,
        "seed": seed,
        "steps": steps,
        "eval_tasks": len(evaluation),
        "val_samples": config.val_samples,
        **figures(curves),
        "curves": curves,
        "runs": {name: f"runs/{name}" for name in RUNS},
        "tasks": {"eval": "tasks/eval.jsonl", "train": "tasks/train.jsonl"},
        "wall_time": round(time.perf_counter() - start, 1),
    }
    write_result(out, "ttt", result)
    write_report(out, "ttt", section(result, out))
    return result


def figures(curves: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """before (the test-time run's first evaluation), after (its last), after_disjoint
    (the other run's last), greedy beside each; safe and helped, on the sampled figure."""
    ttt, disjoint = curves["ttt"], curves["disjoint"]
    before, after = ttt[0]["val_accuracy"], ttt[-1]["val_accuracy"]
    return {
        "before": before,
        "after": after,
        "after_disjoint": disjoint[-1]["val_accuracy"],
        "before_greedy": ttt[0]["val_greedy_accuracy"],
        "after_greedy": ttt[-1]["val_greedy_accuracy"],
        "after_disjoint_greedy": disjoint[-1]["val_greedy_accuracy"],
        "safe": after >= before,
        "helped": after > before,
    }


def run_settings(preset_sets: dict[str, str], steps: int, sets: dict[str, str]) -> dict[str, str]:
    """Both runs' `--set` values: ours, the preset's, then the user's. The preset's
    `eval_every` gives way to `steps` (evaluate before and after only) when it does not
    divide `steps`; a user's that does not is refused later, in one line."""
    values = {**RUN_SETS, **preset_sets}
    every = int(values.get("eval_every") or 0)
    if every < 1 or steps % every:
        values["eval_every"] = str(steps)
    return {**values, **sets}


def task_sets(environment: Any, size: int, seed: int) -> tuple[list[Any], list[Any]]:
    """The evaluation tasks (the trainer's own validation draw) and as many generated
    training tasks whose prompts none of them share."""
    evaluation = environment.generate(size, seed=VAL_SEED + seed)
    seen = {task.prompt for task in evaluation}
    want = 2 * size
    while True:
        drawn = environment.generate(want, seed=seed)
        training = [task for task in drawn if task.prompt not in seen]
        if len(training) >= size or want > 64 * size:
            break
        want *= 2
    if len(training) < size:
        raise LabError(
            f"ttt: cannot draw {size} training tasks that differ from the evaluation tasks"
        )
    return evaluation, training[:size]


def write_tasks(path: Path, tasks: list[Any]) -> None:
    """A JSONL task file; one already there must hold the same tasks."""
    text = "".join(json.dumps(task.to_dict()) + "\n" for task in tasks)
    if path.exists() and path.read_text(encoding="utf-8") != text:
        raise LabError(f"{path} holds other tasks; choose another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def train_one(out: str, flags: dict[str, Any], sets: dict[str, str]) -> None:
    """One run (in this process or a worker)."""
    train_run(out=Path(out), flags=flags, sets=sets)


def evaluations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run's validations: before step s, the policy after s − 1 updates."""
    return [
        {"step": r["step"], "updates": r["step"] - 1, "val_accuracy": r["val_accuracy"],
         "val_greedy_accuracy": r["val_greedy_accuracy"]}
        for r in rows if r.get("val_accuracy") is not None
    ]


# -- the report ------------------------------------------------------------------------


def section(result: dict[str, Any], out: Path) -> Section:
    """The report's part: before, after, after on disjoint tasks; the curves plotted."""
    return Section(
        title="Test-time training",
        reading=reading(result),
        study=STUDY,
        figures=[_plot(result, out / "ttt.png")] if result.get("curves") else [],
        columns=["", "sampled accuracy", "greedy accuracy"],
        rows=[
            [label, f"{result[a]:.3f}", f"{result[g]:.3f}"]
            for label, a, g in (("before", "before", "before_greedy"),
                                (f"after {result.get('steps')} updates on the evaluation "
                                 "tasks", "after", "after_greedy"),
                                (f"after {result.get('steps')} updates on disjoint tasks",
                                 "after_disjoint", "after_disjoint_greedy"))
        ],
        settings={k: result.get(k) for k in ("model", "env", "reward", "steps", "eval_tasks",
                                             "val_samples", "seed", "preset", "wall_time")},
    )


def _digits(*groups: tuple[float, ...]) -> int:
    """Decimals (3, or up to 6 where needed) at which the distinct figures of each group
    print distinct: a reading that says a figure rose must not print it the same before
    and after, nor a change of +0.000."""
    digits = 3
    while digits < 6 and any(len({round(x, digits) for x in group}) < len(set(group))
                             for group in groups):
        digits += 1
    return digits


def _than(a: float, b: float) -> str:
    return "more than" if a > b else "as much as" if a == b else "less than"


def reading(result: dict[str, Any]) -> list[str]:
    """The reading: what each run did to sampled and greedy accuracy, the verdict on the
    sampled figure (the study's avg@k) and, where greedy accuracy fell or moved the other
    way, what that says. Each sentence is decided on the figures it prints."""
    before, after, other = result["before"], result["after"], result["after_disjoint"]
    bg, ag, og = result["before_greedy"], result["after_greedy"], result["after_disjoint_greedy"]
    n, k, steps = result.get("eval_tasks"), result.get("val_samples"), result.get("steps")
    d = _digits((before, after, other), (0.0, after - before, other - before), (bg, ag, og))

    def f(x: float) -> str:
        return f"{x:.{d}f}"

    def change(x: float) -> str:
        return f"{x - before:+.{d}f}"

    greedy = f"{f(bg)} → {f(ag)}"
    lines = [
        f"Test-time training ({result.get('reward')} on the {n} evaluation tasks themselves, "
        f"no labels, {steps} updates) {'left' if after == before else 'moved'} sampled "
        f"accuracy on them (mean over {k} samples per task) from {f(before)} to {f(after)} "
        f"({change(after)}); greedy {greedy}.",
        f"The same {steps} updates on {n} disjoint training tasks: {f(other)} "
        f"({change(other)}; greedy {f(og)}).",
    ]
    if after >= before:
        verdict = "safe and helped" if after > before else "safe (level) but did not help"
        lines.append(f"As measured here, test-time training was {verdict}: {change(after)}, "
                     f"{_than(after, other)} training on other tasks ({change(other)}).")
    else:
        lines.append(f"As measured here, test-time training was not safe: it ended "
                     f"{f(before - after)} below where it started.")
    on_sampled = "the verdict above is on the sampled figure (the study's avg@k)."
    if ag < bg and after > before:
        lines.append(f"Greedy accuracy fell ({greedy}) while sampled accuracy rose: samples "
                     "were right more often while the most likely answer got worse on some "
                     f"tasks; {on_sampled}")
    elif ag < bg and after == before:
        lines.append(f"Greedy accuracy fell ({greedy}) while sampled accuracy stayed level: the "
                     f"most likely answer got worse on some tasks; {on_sampled}")
    elif ag < bg:
        lines.append(f"Greedy accuracy fell too ({greedy}).")
    elif ag > bg and after < before:
        lines.append(f"Greedy accuracy rose ({greedy}) while sampled accuracy fell: the most "
                     "likely answer got better on some tasks while samples were right less "
                     f"often; {on_sampled}")
    return lines


def _plot(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name, colour, label in (("ttt", "tab:blue", "on the evaluation tasks (TTT)"),
                                ("disjoint", "tab:orange", "on disjoint tasks")):
        curve = result["curves"].get(name) or []
        xs = [c["updates"] for c in curve]
        ax.plot(xs, [c["val_accuracy"] for c in curve], color=colour, marker="o",
                label=f"{label}: sampled")
        ax.plot(xs, [c["val_greedy_accuracy"] for c in curve], color=colour, linestyle="--",
                label=f"{label}: greedy")
    ax.axhline(result["before"], color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("updates")
    ax.set_ylabel("accuracy on the evaluation tasks")
    ax.set_title(f"{result.get('reward')}, no labels")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


EXPERIMENT = Experiment(
    name="ttt",
    summary="Test-time training: train with an intrinsic reward on the evaluation tasks "
            "themselves (no labels) and, beside it, on disjoint tasks; accuracy before and "
            "after. Writes OUT/ttt.json and OUT/report.html (docs/lab.md).",
    run=run,
    presets=PRESETS,
    options=(
        shared("reward", help="An intrinsic (label-free) reward; one that needs labels is "
                              "refused."),
        shared("steps", help="Updates before the final evaluation (default: the preset's, 40)."),
        shared("model"),
        shared("env"),
        shared("seed"),
        shared("sets", help="Any `assay train` option, for both runs (val_size: the "
                            "evaluation tasks)."),
        shared("jobs"),
    ),
    section=section,
    resume_hint="run the same command again: finished runs are kept",
    owned=OWNED,
    shape=RESULT_SHAPE,
)
