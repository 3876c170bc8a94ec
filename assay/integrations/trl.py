"""assay environments and rewards as TRL reward functions, and `assay train --backend trl`.

`reward_funcs(env, reward)` returns one function with TRL's reward-function signature,
`(prompts, completions, completion_ids, **dataset_columns) -> list[float | None]`. It
rebuilds each completion's task from the dataset's columns (`task_dataset` writes them:
the prompt, and the task as JSON text in `assay_task`), groups the completions of one
prompt (TRL places a prompt's `num_generations` completions next to each other), scores
each group with the assay reward and logs the verdict counts (`verdicts/<status>`) through
TRL's `log_metric`. A completion whose verifier broke (`error`) gets `None`: TRL's "not
applicable", never a silent 0.

What TRL cannot give an assay reward, refused up front with the reason:
- per-token statistics (`self_certainty`, `token_entropy`, `trajectory_entropy`,
  `probability`): TRL hands reward functions text and token ids, not the policy's
  log-probs or entropies;
- a judge (`self_verify`): the policy is not reachable from a reward function;
- a whole group, when TRL's settings split one prompt's completions across processes or
  batches: keep `per_device_train_batch_size` (and the generation batch) a multiple of
  `num_generations`, as `GRPOConfig`s from `grpo_config` do. A group reward seeing a
  partial group raises instead of voting over part of it.

TRL is imported lazily; without it, one line says how to install it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assay.envs import Environment, Task
from assay.envs.episode import max_turns
from assay.errors import AssayError
from assay.integrations.trl_episodes import FINAL_REPLY, episode_rollout, message_text
from assay.rewards import get_reward
from assay.rewards.base import PENDING, Completion, Reward, RolloutGroup
from assay.verifiers import STATUSES

TASK_COLUMN = "assay_task"
#: a completion's per-token statistics: TRL gives reward functions none, so a reward that
#: reads them without saying so (`needs`: those are refused by `check_reward`) fails
#: loudly (`PendingStats`) rather than reading empty arrays as zeros
_NO_STATS: tuple[Any, Any, Any] = (PENDING, PENDING, PENDING)


class TRLError(AssayError, ValueError):
    """What TRL cannot do with an assay reward, or TRL missing: one line."""


def require_trl() -> Any:
    try:
        import trl
    except ImportError:
        raise TRLError("the TRL backend needs trl: pip install 'assay[trl]'") from None
    return trl


def check_reward(reward: Reward) -> None:
    """Refuse a reward that needs what TRL's reward functions do not receive."""
    if "token_stats" in reward.needs:
        raise TRLError(
            f"reward {reward.name!r} needs the policy's per-token statistics (log-probs, "
            "entropies, self-certainty), which TRL does not pass to reward functions; use "
            "assay's own trainer (assay train) for it"
        )
    if "judge" in reward.needs:
        raise TRLError(
            f"reward {reward.name!r} needs the policy as a judge, which a TRL reward function "
            "cannot reach; use assay's own trainer (assay train) for it"
        )


def task_dataset(env: Environment, tasks: list[Task]) -> Any:
    """A `datasets.Dataset` with the columns `prompt` and `assay_task` (the task as JSON)."""
    from datasets import Dataset

    return Dataset.from_list(
        [{"prompt": task.prompt, TASK_COLUMN: json.dumps(task.to_dict())} for task in tasks]
    )


def _groups(keys: list[str]) -> list[range]:
    """Runs of consecutive equal keys: TRL's sampler puts a prompt's generations together."""
    runs, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            runs.append(range(start, i))
            start = i
    return runs


def _task_fields(env: Environment, columns: dict[str, Any], rows: int) -> list[dict[str, Any]]:
    """Each row's task fields: the `assay_task` column's JSON, or the env's fields as
    columns of their own; a row that is not a task of `env` is a `TRLError` naming it."""
    from assay.envs.taskfile import validate_fields

    if TASK_COLUMN in columns:
        fields = []
        for i, text in enumerate(columns[TASK_COLUMN]):
            try:
                fields.append(json.loads(text))
            except (TypeError, ValueError) as exc:
                raise TRLError(f"column {TASK_COLUMN!r}, row {i}: not a task's JSON ({exc})") from None
    else:  # the env's task fields as columns of their own
        names = [k for k in columns if k in env.task_schema.get("properties", {})]
        fields = [{k: columns[k][i] for k in names} for i in range(rows)]
    for i, row in enumerate(fields):
        problems = validate_fields(env, row)
        if problems:
            where = f"column {TASK_COLUMN!r}" if TASK_COLUMN in columns else "the task columns"
            raise TRLError(f"{where}, row {i}: not a task of env {env.name!r}: {problems[0]}")
    return fields


def reward_funcs(
    env: Environment, reward: str | Reward, *, num_generations: int | None = None
) -> Callable[..., list[float | None]]:
    """A TRL reward function that scores completions with `reward` over `env`'s verdicts.

    `num_generations` (TRL's group size) lets a group reward check it sees whole groups.
    """
    reward = get_reward(reward)
    check_reward(reward)
    reward.check_env(env)
    terms = [r for _, r in reward.terms] if hasattr(reward, "terms") else [reward]
    # an intrinsic reward (majority vote, semantic entropy) compares a prompt's completions
    # with each other, so it must see the whole group
    groupwise = any(r.kind == "intrinsic" for r in terms)

    def assay_reward(prompts: list[Any], completions: list[Any], completion_ids: Any = None,
                     **columns: Any) -> list[float | None]:
        fields = _task_fields(env, columns, len(prompts))
        texts = [str(t) for t in columns[FINAL_REPLY]] if FINAL_REPLY in columns else \
            [message_text(c) for c in completions]
        if len(texts) != len(fields):
            raise TRLError(f"reward {reward.name!r}: {len(texts)} completions for {len(fields)} prompts")
        ids = list(completion_ids) if completion_ids is not None else [[] for _ in texts]
        if len(ids) != len(texts):
            raise TRLError(f"reward {reward.name!r}: {len(ids)} completion_ids for {len(texts)} completions")
        runs = _groups([json.dumps(f, sort_keys=True) for f in fields])
        if groupwise and num_generations:
            for run in runs:
                if len(run) != num_generations:
                    raise TRLError(
                        f"reward {reward.name!r} scores whole groups, but a call held {len(run)} "
                        f"of a prompt's {num_generations} completions: keep "
                        "per_device_train_batch_size a multiple of num_generations "
                        "(docs/integrations.md)"
                    )
        tasks = [env.make_task(fields[run.start]) for run in runs]
        # every completion verified in one call (the env's worker pool runs them in parallel)
        verdicts = env.verify_many([(task, texts[i]) for task, run in zip(tasks, runs, strict=True)
                                    for i in run])
        out: list[float | None] = [None] * len(texts)
        for task, run in zip(tasks, runs, strict=True):
            group = RolloutGroup(task=task, prompt=task.prompt, env=env,
                                 completions=[Completion(texts[i], [int(t) for t in ids[i]], *_NO_STATS)
                                              for i in run],
                                 verdicts=[verdicts[i] for i in run])
            for i, value, verdict in zip(run, reward(group), group.verdicts, strict=True):
                out[i] = None if verdict.status == "error" else value
        log_metric = columns.get("log_metric")
        if callable(log_metric):
            counts = Counter(v.status for v in verdicts)
            for status in STATUSES:
                log_metric(f"verdicts/{status}", float(counts[status]))
            log_metric("gt_accuracy", counts["correct"] / max(len(texts), 1))
        return out

    assay_reward.__name__ = f"assay_{reward.name}".replace(" ", "")
    return assay_reward


# -- assay train --backend trl ---------------------------------------------------------

#: where the trained model goes, under OUT/checkpoints (`--model OUT/checkpoints/last`)
LAST = "last"

#: TRL's logged names -> assay's metrics.jsonl keys (the ones TRL has)
METRIC_KEYS = {
    "reward": "reward",
    "reward_std": "reward_std",
    "frac_reward_zero_std": "frac_reward_zero_std",
    "completions/mean_length": "completion_length",
    "entropy": "entropy",
    "kl": "kl",
    "clip_ratio/region_mean": "clip_ratio",
    "loss": "loss",
    "grad_norm": "grad_norm",
    "learning_rate": "lr",
    "gt_accuracy": "gt_accuracy",
    **{name: name for name in ("turns", "tool_calls", "tool_errors", "tool_timeouts")},
    **{f"verdicts/{s}": f"verdicts/{s}" for s in STATUSES},
}


#: `assay train` options TRL's trainer has no counterpart for, with the value that means
#: what TRL does anyway (`_ANY`: none); set by the user to anything else they are refused
#: (`unsupported_options`), not ignored
_ANY = object()
WITHOUT_COUNTERPART: dict[str, Any] = {
    "train_layers": 0,  # TRL trains every layer
    "micro_batch_size": 0,  # the whole batch in one pass: groups stay whole
    "dtype": "float32",
    "engine": "hf",
    "max_episode_tokens": 0,
    "eval_every": 0,  # no validation
    "val_file": None, "val_size": _ANY, "val_samples": _ANY,
    "log_kl": False,  # TRL logs KL only when beta > 0
    "collapse_signal": _ANY, "collapse_threshold": _ANY,
    "stop_on_collapse": False,
    "save_every": 0,  # the model is saved once, at the end
    "keep_checkpoints": _ANY,
    "tensorboard": False, "wandb": False, "wandb_project": _ANY,
    "save_rollouts": False,  # no rollouts.jsonl.gz
    "verify_temperature": _ANY, "verify_max_new_tokens": _ANY, "verify_judge": _ANY,
}


def unsupported_options(cfg: Any, chosen: set[str]) -> list[str]:
    """The options of `chosen` (those the user set, by `--set` or in a config file) that
    the TRL backend would ignore at the value `cfg` gives them, as `key=value`."""
    return [
        f"{key}={getattr(cfg, key)}"
        for key, neutral in WITHOUT_COUNTERPART.items()
        if key in chosen and (neutral is _ANY or getattr(cfg, key) != neutral)
    ]


def grpo_config(cfg: Any, output_dir: str, quiet: bool = False) -> Any:
    """TRL's `GRPOConfig` from assay's `TrainConfig` (the knobs both have)."""
    trl = require_trl()
    if cfg.loss_type not in ("grpo", "dr_grpo", "dapo"):
        raise TRLError(f"loss_type {cfg.loss_type!r} has no TRL counterpart")
    return trl.GRPOConfig(
        output_dir=output_dir,
        max_steps=cfg.steps,
        # one optimizer step per rollout batch, the whole batch on this process: groups stay whole
        per_device_train_batch_size=cfg.prompts_per_step * cfg.group_size,
        gradient_accumulation_steps=1,
        num_generations=cfg.group_size,
        num_iterations=cfg.updates_per_batch,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        lr_scheduler_type="cosine" if cfg.lr_schedule == "cosine" else "constant",
        warmup_steps=cfg.warmup_steps,
        max_grad_norm=cfg.max_grad_norm or 1e9,
        beta=cfg.beta,
        epsilon=cfg.epsilon_low,
        epsilon_high=cfg.epsilon_high,
        loss_type=cfg.loss_type,
        scale_rewards="group" if cfg.scale_rewards else "none",
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_completion_length=cfg.max_new_tokens,
        mask_truncated_completions=cfg.mask_truncated,
        seed=cfg.seed,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=cfg.device == "cpu",
        bf16=False,
        disable_tqdm=not cfg.progress or quiet,
    )


def train(cfg: Any, *, quiet: bool = False) -> dict[str, Any]:
    """`assay train --backend trl`: TRL's GRPOTrainer on assay's env, reward and model;
    writes OUT/metrics.jsonl (assay's keys where TRL has them), config.yaml, summary.json
    and the trained model in OUT/checkpoints/last."""
    import warnings

    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from assay.envs import get_env
    from assay.organism import read_metadata
    from assay.training.checkpoint import write_json
    from assay.training.config import dump_yaml
    from assay.training.policy import load_policy, resolve_model_path
    from assay.training.trainer import prompt_note, training_tasks

    trl = require_trl()
    # transformers' deprecation notices about settings TRL passes, not about the user's
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")
    out = Path(cfg.out)
    if (out / "metrics.jsonl").exists():
        raise TRLError(f"{out} already holds a run; choose another --out (the TRL backend "
                       "does not resume)")
    env = get_env(cfg.env, **cfg.env_options)
    reward = get_reward(cfg.reward)
    check_reward(reward)
    tasks = training_tasks(env, cfg.train_file, cfg.train_size, cfg.seed)  # as assay train
    if note := prompt_note(env, tasks, cfg.train_file):
        print(f"assay: {note}", file=sys.stderr)
    # loaded on the CPU; TRL (accelerate) moves it where GRPOConfig says
    model_path = resolve_model_path(cfg.model, cfg.prior, quiet=quiet)
    model, tokenizer = load_policy(model_path, native=False)  # TRL takes transformers' classes
    out.mkdir(parents=True, exist_ok=True)
    dump_yaml(cfg, out / "config.yaml")
    metrics_file = (out / "metrics.jsonl").open("a", encoding="utf-8")
    started = time.perf_counter()

    class WriteMetrics(TrainerCallback):
        """Each TRL log line as one metrics.jsonl row, under assay's names."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
                   **kwargs: Any) -> None:
            if not logs or "reward" not in logs:
                return  # the end-of-training summary line
            row: dict[str, Any] = {"step": state.global_step}
            row.update({ours: logs[theirs] for theirs, ours in METRIC_KEYS.items()
                        if theirs in logs})
            row["wall_time"] = time.perf_counter() - started
            metrics_file.write(json.dumps(row) + "\n")
            metrics_file.flush()

    rollout = None
    if max_turns(env) > 1:  # whole episodes, through TRL's rollout hook (trl_episodes.py)
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # the hook is documented here
        rollout = episode_rollout(env, tasks, seed=cfg.seed, chat_template=cfg.chat_template)
    trainer = trl.GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=[reward_funcs(env, reward, num_generations=cfg.group_size)],
        args=grpo_config(cfg, str(out / "trl"), quiet),
        train_dataset=task_dataset(env, tasks),
        callbacks=[WriteMetrics()],
        rollout_func=rollout,
    )
    if quiet:  # transformers prints every log dict through one of these two
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    try:
        trainer.train()
    finally:
        metrics_file.close()
        env.close()
    save_model(trainer.accelerator.unwrap_model(trainer.model), tokenizer,
               out / "checkpoints" / LAST, read_metadata(model_path))
    if (out / "trl").is_dir() and not any((out / "trl").iterdir()):
        (out / "trl").rmdir()  # TRL's output_dir, left empty (save_strategy="no")
    summary = {"steps": trainer.state.global_step, "collapse": None, "backend": "trl",
               "trl_version": trl.__version__, "interrupted": False}
    write_json(out / "summary.json", summary)
    return summary


def save_model(model: Any, tokenizer: Any, folder: Path, metadata: dict[str, Any]) -> None:
    """The trained model as a Hugging Face folder (`assay eval --model FOLDER`, `--model` of
    another run), with the `assay.json` of the model it started from (its env, env options,
    training defaults); written beside and renamed into place, so a kill leaves no half."""
    from assay.training.checkpoint import write_model

    write_model(folder, model, tokenizer, metadata)
