"""What the experiments made of several `assay train` runs share (`assay sharpen`,
`assay ttt`): refusing a reward that needs labels or a folder made with other settings,
resolving the runs' settings once, and a policy's greedy replies. They train their runs
through the lab's one job runner, `workers.run_all`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.envs import Task
from assay.lab.experiment import LabError
from assay.lab.presets import lab_config


def resolve_runs(
    command: str, sets: dict[str, str], flags: dict[str, Any]
) -> tuple[dict[str, str], Any, Any]:
    """The runs' `--set` values (with the env's `lab_options` unless told otherwise: on
    countdown, votes compared by value), their resolved config and the env; a bad value
    is one line naming `command`."""
    from assay.envs import OptionError, UnknownEnvError, get_env
    from assay.training import ConfigError

    try:
        sets, config = lab_config(sets, flags)
        return sets, config, get_env(config.env, **config.env_options)
    except (ConfigError, UnknownEnvError, OptionError) as exc:
        raise LabError(f"{command}: {exc}") from None


def require_intrinsic(reward: str, command: str) -> None:
    """A one-line `LabError` unless `reward` is intrinsic (label-free)."""
    from assay.rewards import RewardError, get_reward

    try:
        kind = get_reward(reward).kind
    except RewardError as exc:
        raise LabError(f"{command}: {exc}") from None
    if kind != "intrinsic":
        raise LabError(
            f"{command}: reward {reward!r} is {kind}: {command} trains without labels, so it "
            "takes an intrinsic reward such as majority_vote or self_certainty"
        )


def check_settings(run: Path, config: Any) -> None:
    """Refuse to continue a run folder made with other settings (one line)."""
    from assay.training import ConfigError
    from assay.training.config import read_yaml

    saved = run / "config.yaml"
    if not saved.is_file():
        return
    try:
        before = read_yaml(str(saved))
    except ConfigError:  # unreadable: every setting counts as changed
        before = {}
    now = config.to_dict()
    differ = sorted(k for k in now if k not in IGNORED and before.get(k) != now[k])
    if differ:
        raise LabError(
            f"{run} holds a run made with other settings ({', '.join(differ[:4])}); "
            "choose another --out"
        )


#: settings that may differ between a run and its continuation: where it is (a folder may
#: be moved) and its task files' paths (the callers check the files' contents themselves)
IGNORED = ("out", "progress", "train_file", "val_file")


@dataclass
class Greedy:
    """A policy's greedy reply to one task: the text, the extracted answer, its verdict."""

    completion: str
    answer: str | None
    correct: bool


def greedy(model_path: str, tasks: list[Task], env: Any, config: Any) -> list[Greedy]:
    """The greedy reply of the policy at `model_path` to each task, one prompt at a time
    (as the trainer's validation decodes it: the same engine, no padding between prompts)."""
    from assay.rewards.base import safe_extract
    from assay.training.policy import device_name, encode_prompt, load_policy, uses_chat_template
    from assay.training.rollout import HFEngine

    model, tokenizer = load_policy(model_path, device=device_name(config.device),
                                   dtype=config.dtype)
    engine = HFEngine(model, tokenizer)
    chat = uses_chat_template(tokenizer, config.chat_template)
    out = []
    for task in tasks:
        ids = encode_prompt(tokenizer, task.prompt, chat)
        (gen,), = engine.generate([ids], 1, greedy=True, max_new_tokens=config.max_new_tokens)
        text = tokenizer.decode(gen.token_ids, skip_special_tokens=True)
        out.append(Greedy(text, safe_extract(env, text), env.verify(task, text).correct))
    return out
