"""`assay sharpen`: train on each problem alone with majority vote; does it correct the
model, or only sharpen what it already believed?

The study's per-problem experiment (its Figure 4): one run per problem, trained on that
problem alone, and the greedy answer compared before and after. Intrinsic training
converges on the model's initial majority answer, right or wrong, so greedy correctness
should rarely flip (the study: 22 of 25 problems kept, 3 flipped).

Each problem is an `assay train` run in `OUT/runs/<task id>/` whose task file is that one
problem (`task.jsonl`, both `train_file` and `val_file`, so the trainer's validation at
step 1 measures it). With one prompt a step and a large group, each step's rollouts
(`rollouts.jsonl.gz`) hold the majority share: the fraction of the group giving the most
common answer, under the env's `answer_key` (`env.vote_key=value` on countdown, as the
lab's presets use). The greedy reply is decoded here from the initial model and from the
run's final checkpoint (after the last update), one prompt at a time as the trainer's
validation decodes it.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from assay.lab.experiment import (
    FLAG,
    NUMBER,
    TEXT,
    WHOLE,
    LabError,
    Preset,
    Section,
    list_of,
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
from assay.lab.registry import Experiment, Option, refuse_owned, shared

#: `--preset`: model, problems, updates and training settings (flags override them)
PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", "seconds, for tests: the tiny organism, 3 problems x 6 updates",
                    {"model": "organism:tiny", "problems": 3, "steps": 6,
                     "sets": {"group_size": "8", "val_samples": "4"}}),
    "default": Preset("default", "the organism, 25 problems x 100 updates",
                      {"model": "organism", "problems": 25, "steps": 100, "sets": {}}),
}
#: every problem's run: its one prompt each step, a group large enough to read a share from
RUN_SETS = {
    "prompts_per_step": "1",
    "group_size": "16",
    "val_samples": "16",
    "save_every": "0",  # one checkpoint, at the end: the final policy, decoded greedily here
    "keep_checkpoints": "1",
    "progress": "false",
}
#: the problems are the first `--problems` tasks the env generates with this seed (+ `--seed`):
#: a fixed draw, not chosen by outcome; the model's own accuracy makes the mix of start states
PROBLEM_SEED = 2_000
TASK_FILE = "task.jsonl"
#: what sharpen sets for every problem's run itself, and the flag that changes it instead
#: of `--set` (or why none does)
OWNED = {"model": "--model", "env": "--env", "reward": "--reward", "steps": "--steps",
         "seed": "--seed", "out": "--out",
         "train_file": "each problem's run trains on that problem alone (how many: --problems)",
         "val_file": "each problem's run validates on that problem alone (how many: --problems)"}

STUDY = (
    "training on each problem alone (25 problems) amplified the model's initial preference, "
    "right or wrong, on 22 of them (88%); greedy correctness flipped on only 3 (12%)."
)


def _majority_fields_problem(per: list[dict[str, Any]]) -> str | None:
    """Results written before the greedy-is-majority fields lack them on every problem."""
    has = {("initial_greedy_is_majority" in p, "final_greedy_is_majority" in p) for p in per}
    if len(has) > 1 or has - {(True, True), (False, False)}:
        return ("initial_greedy_is_majority and final_greedy_is_majority must be on every "
                "problem or on none")
    return None


#: what OUT/sharpen.json holds that the report reads (`assay report` refuses a file without it)
_PROBLEM = {"task": TEXT, "prompt": TEXT, "initial_answer": maybe(TEXT),
            "final_answer": maybe(TEXT), "initial_greedy": FLAG, "final_greedy": FLAG,
            "initial_majority_share": NUMBER, "final_majority_share": NUMBER,
            "trajectory": list_of(NUMBER),
            "initial_greedy_is_majority": optional(FLAG),
            "final_greedy_is_majority": optional(FLAG)}
RESULT_SHAPE = {"per_problem": where(list_of(_PROBLEM, 1), _majority_fields_problem),
                # the counts and settings the reading names
                **{key: WHOLE for key in ("problems", "kept", "wrong_to_right", "right_to_wrong",
                                          "stayed_right", "stayed_wrong", "same_majority_answer",
                                          "steps", "group_size")},
                "reward": TEXT}


def run(
    *,
    model: str | None = None,
    env: str | None = None,
    reward: str = "majority_vote",
    problems: int | None = None,
    steps: int | None = None,
    out: str | Path = "runs/sharpen",
    seed: int = 0,
    sets: dict[str, str] | None = None,
    preset: str = "default",
    jobs: int | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train one run per problem; write and return `OUT/sharpen.json`."""
    from assay.lab.runs import greedy, require_intrinsic, resolve_runs
    from assay.lab.workers import jobs_for, run_all
    from assay.training.policy import resolve_model_path

    refuse_owned("sharpen", sets, OWNED)
    chosen = pick_preset(PRESETS, preset, "sharpen")
    model = model or chosen["model"]
    problems = chosen["problems"] if problems is None else problems
    steps = chosen["steps"] if steps is None else steps
    if problems < 1:
        raise LabError("sharpen: --problems must be at least 1")
    if steps < 1:
        raise LabError("sharpen: --steps must be at least 1")
    if jobs is not None and jobs < 1:
        raise LabError("sharpen: --jobs must be at least 1")
    require_intrinsic(reward, "sharpen")
    out = Path(out)
    flags = {"model": model, "env": env, "reward": reward, "steps": steps, "seed": seed}
    # validation before step 1 only (eval_every = steps): the trainer's greedy figure there
    # is the initial one; the final one is decoded from the last checkpoint
    run_sets = {**RUN_SETS, "eval_every": str(steps), **chosen["sets"], **(sets or {})}
    run_sets, config, environment = resolve_runs("sharpen", run_sets, flags)
    try:
        tasks = environment.generate(problems, seed=PROBLEM_SEED + seed)
    except NotImplementedError:
        raise LabError(f"sharpen: env {config.env!r} does not generate tasks") from None
    model_path = resolve_model_path(config.model, config.prior, quiet=quiet)  # built once, here
    start = time.perf_counter()
    initial = greedy(model_path, tasks, environment, config)
    calls = [
        {"run_dir": str(out / "runs" / folder_name(task.id)), "task": task.to_dict(),
         "flags": flags, "sets": run_sets}
        for task in tasks
    ]
    jobs = jobs or jobs_for(config.model, config.device)
    with run_progress("sharpen", len(calls), enabled=not quiet) as bar:
        bar.doing(f"{min(jobs, len(calls))} at a time")
        finished = run_all(
            train_problem, calls, jobs=jobs,
            done=lambda i, r: bar.advance(f"{tasks[i].id}: share {r['final_majority_share']:.2f}"),
        )
    per_problem = []
    for task, first, last, call in zip(tasks, initial, finished, calls, strict=True):
        per_problem.append({
            "task": task.id,
            "prompt": task.prompt,
            "run": str(Path(call["run_dir"]).relative_to(out)),
            "initial_greedy": first.correct,
            "final_greedy": last["final_greedy"],
            "initial_answer": first.answer,
            "final_answer": last["final_answer"],
            "initial_majority_share": last["trajectory"][0],
            "final_majority_share": last["final_majority_share"],
            "initial_majority_answer": last["initial_majority_answer"],
            "final_majority_answer": last["final_majority_answer"],
            "same_majority_answer": last["same_majority_answer"],
            # was the greedy answer the group's majority answer (under `answer_key`)?
            "initial_greedy_is_majority": agree(environment, task, first.answer,
                                                last["initial_majority_answer"]),
            "final_greedy_is_majority": agree(environment, task, last["final_answer"],
                                              last["final_majority_answer"]),
            "trajectory": last["trajectory"],
            "trajectory_correct": last["trajectory_correct"],
        })
    environment.close()
    result = {
        "model": config.model,
        "env": config.env,
        "reward": reward,
        "preset": preset,
        "seed": seed,
        "steps": steps,
        "group_size": config.group_size,
        "selection": (f"the first {problems} tasks {config.env} generates with seed "
                      f"{PROBLEM_SEED + seed} (a fixed draw, not chosen by outcome)"),
        **tally(per_problem),
        "per_problem": per_problem,
        "wall_time": round(time.perf_counter() - start, 1),
    }
    write_result(out, "sharpen", result)
    write_report(out, "sharpen", section(result, out))
    return result


def folder_name(task_id: str) -> str:
    """A task id as a folder name (`countdown-2000-7` stays as it is)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(task_id)) or "task"


def agree(env: Any, task: Any, a: str | None, b: str | None) -> bool:
    """Whether two answers are the same under the env's `answer_key` (no answer: never)."""
    return a is not None and b is not None and env.answer_key(task, a) == env.answer_key(task, b)


def tally(per_problem: list[dict[str, Any]]) -> dict[str, int]:
    """The counts of the result: problems, kept (greedy correctness unchanged), the flips."""
    moves = Counter((p["initial_greedy"], p["final_greedy"]) for p in per_problem)
    return {
        "problems": len(per_problem),
        "kept": moves[True, True] + moves[False, False],
        "wrong_to_right": moves[False, True],
        "right_to_wrong": moves[True, False],
        "stayed_right": moves[True, True],
        "stayed_wrong": moves[False, False],
        # the majority answer of the last step's group is the first step's
        "same_majority_answer": sum(bool(p["same_majority_answer"]) for p in per_problem),
    }


def train_problem(
    run_dir: str, task: dict[str, Any], flags: dict[str, Any], sets: dict[str, str]
) -> dict[str, Any]:
    """Train on one problem alone (in this process or a worker); its majority-share
    trajectory and the final policy's greedy reply."""
    from assay.envs import get_env
    from assay.lab.runs import check_settings, greedy
    from assay.training import checkpoint, resolve
    from assay.training.rollout_store import FILENAME, read_rollouts

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    task_file = run / TASK_FILE
    line = json.dumps(task) + "\n"
    if task_file.exists() and task_file.read_text(encoding="utf-8") != line:
        raise LabError(f"{task_file} holds another problem; choose another --out")
    task_file.write_text(line, encoding="utf-8")
    sets = {**sets, "train_file": str(task_file), "val_file": str(task_file)}
    config = resolve(sets=sets, flags={**flags, "out": str(run)})
    check_settings(run, config)
    summary, _ = train_run(out=run, flags=flags, sets=sets)
    last = checkpoint.latest(run)
    if summary.get("steps") != config.steps or last is None or not last.name.endswith(
        f"-{config.steps:06d}"
    ):
        raise LabError(f"{run}: the run did not finish its {config.steps} steps")
    env = get_env(config.env, **config.env_options)
    try:
        (the_task,) = env.load(task_file)
        shares = majority_trajectory(read_rollouts(run / FILENAME), env, the_task, config.steps)
        (final,) = greedy(str(last), [the_task], env, config)
    finally:
        env.close()
    return {
        "final_greedy": final.correct,
        "final_answer": final.answer,
        "trajectory": [s["share"] for s in shares],
        "trajectory_correct": [s["correct"] for s in shares],
        "final_majority_share": shares[-1]["share"],
        "initial_majority_answer": shares[0]["answer"],
        "final_majority_answer": shares[-1]["answer"],
        # the last step's majority answer is the first step's (equal under `answer_key`)
        "same_majority_answer": shares[0]["key"] is not None
        and shares[0]["key"] == shares[-1]["key"],
    }


def majority_trajectory(
    rows: list[dict[str, Any]], env: Any, task: Any, steps: int
) -> list[dict[str, Any]]:
    """Per step 1..steps, from the stored rollouts of one prompt: the majority share (the
    most common answer's count over the group, answers compared by `answer_key`; no answer
    never wins), whether the majority answer is correct (any completion giving it is, as
    the trainer's `label_accuracy` counts it) and that answer (its first completion's; `key`: under `answer_key`)."""
    by_step: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_step.setdefault(row["step"], []).append(row)
    out = []
    for step in range(1, steps + 1):
        group = sorted(by_step.get(step, []), key=lambda r: (r["prompt"], r["index"]))
        if not group:
            raise LabError(f"no stored rollouts for step {step}")
        keys = [None if r["answer"] is None else env.answer_key(task, r["answer"]) for r in group]
        counts = Counter(k for k in keys if k is not None)
        if not counts:
            out.append({"share": 0.0, "correct": False, "answer": None, "key": None})
            continue
        winner, count = counts.most_common(1)[0]
        chosen = [r for r, k in zip(group, keys, strict=True) if k == winner]
        out.append({
            "share": count / len(group),
            "correct": any(r["status"] == "correct" for r in chosen),
            "answer": chosen[0]["answer"],
            "key": winner,
        })
    return out


# -- the report ------------------------------------------------------------------------


def section(result: dict[str, Any], out: Path) -> Section:
    """The report's part: the counts, the trajectories plotted, one row per problem."""
    per = result.get("per_problem") or []
    n = result.get("problems", len(per))
    kept, up, down = result.get("kept"), result.get("wrong_to_right"), result.get("right_to_wrong")
    reading = [
        f"Trained alone on each of {n} problems ({result.get('steps')} updates of "
        f"{result.get('reward')}, {result.get('group_size')} samples a step), greedy "
        f"correctness stayed the same on {kept} of {n} ({result.get('stayed_right')} stayed "
        f"right, {result.get('stayed_wrong')} stayed wrong) and flipped on {up + down} "
        f"({up} wrong → right, {down} right → wrong)."
    ]
    if per:
        first = sum(p["initial_majority_share"] for p in per) / len(per)
        last = sum(p["final_majority_share"] for p in per) / len(per)
        sharp = sum(p["final_majority_share"] >= 0.9 for p in per)
        same = result.get("same_majority_answer")
        rose = (f"The majority answer's share of the group rose from {first:.2f} (mean over the "
                f"problems, first step) to {last:.2f} (last step); {sharp} of {n} ended at 0.9 or "
                "more")
        if last > first and isinstance(same, int) and 2 * same > n:  # most kept their answer
            reading.append(f"{rose}, and on {same} of {n} the last step's majority answer was the "
                           "first step's: training sharpened the answer the model already preferred.")
        elif last > first:
            reading.append(f"{rose}, but on only {same} of {n} was the last step's majority answer "
                           "the first step's: on the others the majority moved to another answer.")
        else:
            reading.append(
                f"The majority answer's share of the group went from {first:.2f} (mean over the "
                f"problems, first step) to {last:.2f} (last step); on {same} of {n} the last "
                "step's majority answer was the first step's.")
    if per and "initial_greedy_is_majority" in per[0]:
        apart = [p for p in per if not p["initial_greedy_is_majority"]]
        flipped = [p for p in per if p["initial_greedy"] != p["final_greedy"]]
        flipped_apart = sum(not p["initial_greedy_is_majority"] for p in flipped)
        reading.append(
            f"At the start the greedy answer differed from the sampled majority on {len(apart)} "
            f"of {n} problems; {flipped_apart} of the {len(flipped)} flips were among them. At "
            f"the end the greedy answer was the majority answer on "
            f"{sum(p['final_greedy_is_majority'] for p in per)} of {n}: a flip is the greedy "
            "answer moving to the majority answer when the two differ in correctness."
            if flipped and flipped_apart == len(flipped) else
            f"At the start the greedy answer differed from the sampled majority on {len(apart)} "
            f"of {n} problems; {flipped_apart} of the {len(flipped)} flips were among them; at "
            f"the end the greedy answer was the majority answer on "
            f"{sum(p['final_greedy_is_majority'] for p in per)} of {n}."
        )
    figures = []
    if per:
        figures.append(_plot(per, out / "sharpen.png"))
    rows = [
        [p["task"], p["prompt"], _said(p["initial_answer"], p["initial_greedy"]),
         _said(p["final_answer"], p["final_greedy"]),
         f"{p['initial_majority_share']:.2f} → {p['final_majority_share']:.2f}",
         "kept" if p["initial_greedy"] == p["final_greedy"] else
         ("wrong → right" if p["final_greedy"] else "right → wrong")]
        for p in per
    ]
    return Section(
        title="Sharpening, one problem at a time",
        reading=reading,
        study=STUDY,
        figures=figures,
        columns=["task", "prompt", "greedy before", "greedy after", "majority share",
                 "correctness"],
        rows=rows,
        settings={k: result.get(k) for k in ("model", "env", "reward", "steps", "group_size",
                                             "seed", "preset", "selection", "wall_time")},
    )


def _said(answer: str | None, correct: bool) -> str:
    return f"{answer if answer is not None else '(no answer)'} {'✓' if correct else '✗'}"


def _plot(per: list[dict[str, Any]], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=100)
    for p in per:
        flipped = p["initial_greedy"] != p["final_greedy"]
        ys = p["trajectory"]
        ax.plot(range(1, len(ys) + 1), ys, color="tab:green" if p["final_greedy"] else "tab:red",
                alpha=0.9 if flipped else 0.45, linewidth=2.2 if flipped else 1.0,
                linestyle="--" if flipped else "-")
    from matplotlib.lines import Line2D

    ax.legend(handles=[
        Line2D([], [], color="tab:green", label="greedy right at the end"),
        Line2D([], [], color="tab:red", label="greedy wrong at the end"),
        Line2D([], [], color="grey", linestyle="--", linewidth=2.2, label="correctness flipped"),
    ], loc="lower right", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_xscale("log")  # the shares settle within tens of steps: the start is the story
    from matplotlib.ticker import ScalarFormatter

    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("step, log scale (its rollouts: the policy after step − 1 updates)")
    ax.set_ylabel("majority share of the group")
    ax.set_title("each problem's majority share while training on it alone")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


EXPERIMENT = Experiment(
    name="sharpen",
    summary="Train on each problem alone with majority vote and compare its greedy answer "
            "before and after; write OUT/sharpen.json and OUT/report.html (docs/lab.md).",
    run=run,
    presets=PRESETS,
    options=(
        Option("problems", "How many problems, each trained on alone (default: the preset's, "
               "25).", type=int),
        shared("steps", help="Updates per problem (default: the preset's, 100)."),
        shared("model"),
        shared("env"),
        shared("reward"),
        shared("seed", help="Random seed (training, and which problems are drawn)."),
        shared("sets", help="Any `assay train` option, for every problem's run."),
        shared("jobs"),
    ),
    section=section,
    resume_hint="run the same command again: finished problems are kept",
    owned=OWNED,
    shape=RESULT_SHAPE,
)
