"""Multi-turn assay environments in TRL's GRPOTrainer, through its `rollout_func` hook.

TRL (1.x) lets a `rollout_func(prompts, trainer)` produce the completions of a batch:
it returns each completion's `prompt_ids` and `completion_ids`, may return an `env_mask`
(1 for the model's tokens, 0 for the environment's, which TRL then keeps out of the loss)
and forwards every other key to the reward functions. `episode_rollout(env, tasks, ...)`
is such a function: it plays whole episodes of a multi-turn env (`env.tools=python`,
`env.feedback=tests`) with assay's own turn loop (`play_episodes`) on the model TRL is
training, so the observations reach the model exactly as in `assay train`, and returns:

- `completion_ids`: the replies and the observations between them, after the prompt;
- `env_mask`: the episode's model mask, so TRL trains only the replies;
- `assay_final_reply`: the last reply, which `reward_funcs` verifies (not the whole
  transcript: an observation that quotes a test must not be read as an answer).

It logs `turns` and `tool_calls` (means per episode), `tool_errors` and `tool_timeouts`
(counts) through the trainer's metric log. Sampling is assay's engine on the trainer's model with
TRL's `temperature`, `top_p` and `max_completion_length` per reply; TRL's
`num_generations` copies of a prompt arrive side by side and become one group of
episodes. No log-probs are returned: TRL computes the old policy's itself.

`assay train --backend trl` uses it for a multi-turn env; from Python:

    rollout = episode_rollout(env, tasks, seed=0)
    GRPOTrainer(model=..., reward_funcs=[reward_funcs(env, "verifier")],
                train_dataset=task_dataset(env, tasks), rollout_func=rollout, ...)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from assay.envs import Environment, Task
from assay.envs.episode import Episode
from assay.errors import AssayError

#: the column a multi-turn rollout fills with each episode's last reply: the reply
#: verified, where the completion holds the whole episode (trl.py's reward functions read it)
FINAL_REPLY = "assay_final_reply"


def message_text(completion: Any) -> str:
    """A completion's (or a prompt's) text: a string, or the last message of a
    conversational one."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


class EpisodeRolloutError(AssayError, ValueError):
    """A prompt TRL handed over that is not one of the tasks' prompts: one line."""


def episode_rollout(
    env: Environment,
    tasks: Sequence[Task],
    *,
    seed: int = 0,
    chat_template: bool | None = None,
) -> Callable[[list[Any], Any], dict[str, Any]]:
    """A TRL `rollout_func` that plays `env`'s episodes for the prompts of `tasks` (the
    tasks `task_dataset` was built from). `chat_template`: None uses the tokenizer's
    template when it has one, as `assay train` does."""
    from assay.training.episodes import episode_metrics, play_episodes
    from assay.training.policy import encode_prompt, uses_chat_template
    from assay.training.rollout import HFEngine

    by_prompt = {task.prompt: task for task in tasks}
    calls = itertools.count()

    def rollout(prompts: list[Any], trainer: Any) -> dict[str, Any]:
        tokenizer = trainer.processing_class
        chat = uses_chat_template(tokenizer, chat_template)
        args = trainer.args
        model = trainer.accelerator.unwrap_model(trainer.model)
        engine = HFEngine(model, tokenizer)
        call = next(calls)

        def sample(contexts: list[list[int]], n: int, turn: int) -> list[list[Any]]:
            return engine.generate(contexts, n, temperature=args.temperature, top_p=args.top_p,
                                   max_new_tokens=args.max_completion_length,
                                   seed=seed * 1_000_003 + call * 100 + turn)

        # TRL repeats each prompt for its generations, side by side: one group per run
        runs = [list(g) for _, g in itertools.groupby(range(len(prompts)),
                                                      key=lambda i: message_text(prompts[i]))]
        generations: list[Any] = []
        episodes: list[Episode] = []
        for size, members in itertools.groupby(runs, key=len):  # one call per group size
            groups = list(members)
            group_tasks = []
            for run in groups:
                text = message_text(prompts[run[0]])
                if text not in by_prompt:
                    raise EpisodeRolloutError(
                        f"TRL handed over a prompt that is none of the {len(by_prompt)} tasks' "
                        f"prompts ({text[:60]!r}...): build the dataset with task_dataset(env, tasks)"
                    )
                group_tasks.append(by_prompt[text])
            ids = [encode_prompt(tokenizer, t.prompt, chat) for t in group_tasks]
            gens, eps = play_episodes(env, tokenizer, group_tasks, ids, size, sample, chat=chat,
                                      positions=engine.max_positions)
            for prompt, group in zip(ids, gens, strict=True):
                generations += [(prompt, g) for g in group]
            episodes += eps
        figures = episode_metrics(episodes, [g for _, g in generations])
        log = getattr(trainer, "_log_metric", None)
        if callable(log):
            for name in ("turns", "tool_calls", "tool_errors", "tool_timeouts"):
                log(name, float(figures[name]))
        return {
            "prompt_ids": [prompt for prompt, _ in generations],
            "completion_ids": [list(g.token_ids) for _, g in generations],
            "logprobs": None,
            "env_mask": [list(g.model_mask) for _, g in generations],
            FINAL_REPLY: [e.final_reply for e in episodes],
        }

    return rollout

