"""`assay rescore RUN_DIR --rewards a,b,c`: recompute rewards on a run's stored rollouts.

Which reward would have ranked the run's completions like the verifier, step by step, as
the policy drifted? Each stored completion (`rollouts.jsonl.gz`) is rebuilt into its
group with the run's verdicts and the policy's per-completion aggregates, and scored by
each named reward; `accuracy` is agreement with the verifier's correctness, defined as the
trainer's `reward_accuracy`. The completions the trainer left out of the loss (an `error`
verdict, or a group with fewer than two others) are left out here too.

Without the model, a completion's per-token arrays are rebuilt as constants equal to its
stored means (`n_tokens` of them): every built-in intrinsic reward reads only their mean or
sum (each declares `token_reads = "means"`), so it is recomputed exactly up to rounding.
A reward that reads more of the arrays (a plug-in's default `token_reads = "tokens"`) is
refused in one line rather than recomputed wrong, as is one that needs the policy as its
judge (`self_verify`); `random` draws its own coins.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from assay.envs import Environment, Task, get_env
from assay.errors import AssayError, brief
from assay.rewards import Completion, Reward, RolloutGroup, get_reward, score_group
from assay.training.config import read_yaml
from assay.training.diagnostics import reward_accuracy
from assay.training.rollout_store import FILENAME, numbered_rollouts
from assay.verifiers import STATUSES, Verdict

#: the most tokens a stored completion may claim: its per-token arrays are rebuilt at this
#: length, so a bigger claim is damage, never a reason to allocate it
MAX_TOKENS = 1_000_000
#: the largest step, prompt or index read (a float holds every integer up to it exactly)
MAX_COUNT = 2**53


class RescoreError(AssayError, ValueError):
    """A run folder or reward that cannot be re-scored; the message names which."""


def rescore(run_dir: str | Path, names: list[str]) -> dict[str, Any]:
    """`{"steps", "completions", "rewards": {NAME: {"mean", "accuracy", "per_step"}}}`."""
    run = Path(run_dir)
    env = _run_env(run)
    rewards = _rewards(names, env)
    path = run / FILENAME
    if not path.exists():
        if not (run / "metrics.jsonl").exists():  # config.yaml and summary.json only
            raise RescoreError(f"{run} trained no step, so there are no rollouts to rescore")
        raise RescoreError(
            f"{path} not found: the run stored no rollouts (save_rollouts: false, or an older run)"
        )
    try:  # damage is a RolloutStoreError naming the member or line: never part of the file
        rows = [check_row(row, f"{path}:{lineno}") for lineno, row in numbered_rollouts(path)]
    except OSError as exc:
        raise RescoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not rows:
        raise RescoreError(f"{path} holds no rollouts")
    by_step: dict[int, list[tuple[RolloutGroup, list[bool]]]] = defaultdict(list)
    try:
        for (step, _prompt), members in _groups(rows).items():
            by_step[step].append((_rebuild(members, env), _used(members)))
    except (KeyError, TypeError, ValueError) as exc:
        raise RescoreError(f"{path}: a row lacks or garbles a field ({type(exc).__name__}: {exc})") from None

    out: dict[str, Any] = {"steps": len(by_step), "completions": len(rows), "rewards": {}}
    for reward in rewards:
        per_step, all_values, all_truth = [], [], []
        for step in sorted(by_step):
            values, truth = [], []
            for group, used in by_step[step]:
                scores = score_group(reward, group)[0]
                kept = [s for s, u in zip(scores, used, strict=True) if u]
                if kept:
                    values.append(kept)
                    truth.append([v.correct for v, u in zip(group.verdicts, used, strict=True) if u])
            per_step.append({"step": step, **_figures(values, truth, reward.binary)})
            all_values += values
            all_truth += truth
        out["rewards"][reward.name] = {**_figures(all_values, all_truth, reward.binary),
                                       "per_step": per_step}
    return out


def check_row(row: dict[str, Any], where: str) -> dict[str, Any]:
    """One stored row, or a `RescoreError` naming `where` (file:line) and the bad field."""

    def whole(value: Any, high: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high

    def number(value: Any, low: float = -math.inf, high: float = math.inf) -> bool:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and low <= value <= high)

    checks = (
        ("step", lambda v: whole(v, MAX_COUNT), "a whole number from 0 to 2**53"),
        ("prompt", lambda v: whole(v, MAX_COUNT), "a whole number from 0 to 2**53"),
        ("index", lambda v: whole(v, MAX_COUNT), "a whole number from 0 to 2**53"),
        ("task", lambda v: isinstance(v, dict), "an object (the task's fields)"),
        ("completion", lambda v: isinstance(v, str), "text"),
        ("answer", lambda v: v is None or isinstance(v, str), "text or null"),
        ("status", lambda v: v in STATUSES, f"one of {', '.join(STATUSES)}"),
        ("score", lambda v: number(v, 0.0, 1.0), "a number in [0, 1]"),
        ("n_tokens", lambda v: whole(v, MAX_TOKENS), f"a whole number from 0 to {MAX_TOKENS:,}"),
        ("sum_logprob", lambda v: v is None or number(v), "a finite number or null"),
        ("mean_entropy", lambda v: v is None or number(v), "a finite number or null"),
        ("mean_self_certainty", lambda v: v is None or number(v), "a finite number or null"),
    )
    for key, good, words in checks:
        if key not in row:
            raise RescoreError(f"{where}: {key}: missing")
        if not good(row[key]):
            raise RescoreError(f"{where}: {key}: expected {words}, got {brief(row[key], 60)}")
    for key in ("masked", "finished"):
        if not isinstance(row.get(key, False), bool):
            raise RescoreError(f"{where}: {key}: expected true or false, got {brief(row[key], 60)}")
    return row


def write(result: dict[str, Any], path: str | Path) -> None:
    """The result as JSON (NaN, where no completion counted, as null)."""
    Path(path).write_text(json.dumps(_nulls(result), indent=2) + "\n", encoding="utf-8")


def _figures(values: list[list[float]], truth: list[list[bool]], binary: bool) -> dict[str, float]:
    if not values:
        return {"mean": math.nan, "accuracy": math.nan}
    return {"mean": float(np.mean(np.concatenate(values))),
            "accuracy": reward_accuracy(values, truth, binary)}


def _run_env(run: Path) -> Environment:
    config = run / "config.yaml"
    if not run.is_dir():
        raise RescoreError(f"{run} is not a run folder")
    if not config.exists():
        raise RescoreError(f"{config} not found: {run} is not an `assay train` folder")
    values = read_yaml(str(config))  # a ConfigError names the file and line
    if not isinstance(values.get("env"), str):
        raise RescoreError(f"{config}: no `env` field")
    options = values.get("env_options") or {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise RescoreError(f"{config}: env_options: expected a mapping of option names to values")
    return get_env(values["env"], **options)


def _rewards(names: list[str], env) -> list[Reward]:
    names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not names:
        raise RescoreError("--rewards names no reward")
    rewards = [get_reward(name) for name in names]
    for name, reward in zip(names, rewards, strict=True):
        if "judge" in reward.needs:
            raise RescoreError(f"reward {name!r} needs the policy as its judge; stored rollouts cannot recompute it")
        if "token_stats" in reward.needs and reward.token_reads != "means":
            raise RescoreError(
                f"reward {name!r} reads per-token figures beyond their means (its token_reads is "
                f"{reward.token_reads!r}); stored rollouts keep only each completion's means, so "
                "rescore cannot recompute it")
        reward.check_env(env)
    return rewards


def _groups(rows: list[dict[str, Any]]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    groups: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(int(row["step"]), int(row["prompt"]))].append(row)
    return {k: sorted(v, key=lambda r: r["index"]) for k, v in sorted(groups.items())}


def _rebuild(members: list[dict[str, Any]], env) -> RolloutGroup:
    """The group as the trainer saw it, with constant per-token arrays of the stored means."""
    task = Task.from_dict(members[0]["task"])
    completions = []
    for row in members:
        n = int(row["n_tokens"])

        def const(value: float | None, n: int = n) -> np.ndarray:
            return np.full(n, math.nan if value is None else float(value))

        completions.append(Completion(
            text=row["completion"],
            token_ids=[0] * n,  # not stored: no built-in reward reads them
            logprobs=const(None if row["sum_logprob"] is None else row["sum_logprob"] / max(n, 1)),
            entropies=const(row["mean_entropy"]),
            self_certainty=const(row["mean_self_certainty"]),
            finished=bool(row.get("finished", True)),
        ))
    group = RolloutGroup(task, task.prompt, completions, env,
                         verdicts=[Verdict(float(r["score"]), r["status"], "stored") for r in members])
    group._answers = [row["answer"] for row in members]  # the answers the run extracted
    return group


def _used(members: list[dict[str, Any]]) -> list[bool]:
    """The completions the trainer's loss saw: not masked, in a group with two or more."""
    kept = [not row.get("masked", False) for row in members]
    return kept if sum(kept) >= 2 else [False] * len(kept)


def _nulls(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nulls(v) for v in value]
    return value
