"""Multi-turn rollouts: whole episodes as token sequences the loss can train on.

An episode's completion is every token after its prompt: the model's replies and,
between them, the environment's observations (assay/envs/episode.py). The model wrote
only the replies, so only they may be trained on: `Generation.model_mask` marks each
token 1 (the model's) or 0 (an observation's), and `RolloutBatch.build` takes its loss
mask from it.

An observation reaches the model as its chat template would show it: the end of the
model's turn, the observation as a message, the assistant's next turn opened. A tool's
output is a `tool` message where the template has that role (Qwen's, Llama's), a test
report a user message. A model without a template reads the observation's text as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from assay.envs.episode import Episode, max_turns, observation_role, respond
from assay.envs.task import Task
from assay.training.rollout import Generation

#: stands for the reply when the template is rendered, to find where the reply ends
_REPLY = "ASSAYREPLYMARK"

#: `sample(contexts, n, turn)`: n generations for each context (token ids), drawn with the
#: step's sampling settings and a seed that depends on the turn
Sampler = Callable[[list[list[int]], int, int], list[list[Generation]]]


def observation_ids(tokenizer: Any, observation: str, *, chat: bool,
                    ended_with: int | None, role: str = "user") -> list[int]:
    """The tokens that follow a reply to show `observation` and open the model's next
    turn. `ended_with` is the reply's last token when the reply ended itself (its
    end-of-turn token is then already in place), None when it was cut off. `role` is the
    message's role in the chat template: a tool's output goes in as `tool` where the
    template renders that role, else as a user message."""
    if not chat:
        return list(tokenizer(observation, add_special_tokens=False)["input_ids"])
    rendered = _render(tokenizer, observation, role)
    if rendered is None and role != "user":
        rendered = _render(tokenizer, observation, "user")
    if rendered is None:
        raise ValueError(f"the chat template does not show an observation as a {role} message")
    after = rendered[rendered.index(_REPLY) + len(_REPLY):]  # the turn's end, the message
    if ended_with is not None:
        end = tokenizer.decode([ended_with])
        if end and after.startswith(end):
            after = after[len(end):]
    return list(tokenizer(after, add_special_tokens=False)["input_ids"])


def _render(tokenizer: Any, observation: str, role: str) -> str | None:
    """The template's text of a one-reply conversation followed by `observation` as a
    `role` message; None when the template refuses the role or leaves the message out
    (a template without a tool role may raise, or drop what it does not know)."""
    try:
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": _REPLY},
             {"role": role, "content": observation}],
            add_generation_prompt=True, tokenize=False,
        )
    except Exception:  # jinja's raise_exception, or a template that indexes a missing key
        return None
    if _REPLY not in rendered or observation not in rendered[rendered.index(_REPLY):]:
        return None
    return rendered


def play_episodes(
    env: Any,
    tokenizer: Any,
    tasks: Sequence[Task],
    prompt_ids: list[list[int]],
    group_size: int,
    sample: Sampler,
    *,
    chat: bool,
    positions: int | None = None,
    max_tokens: int = 0,
    reply_tokens: int = 0,
) -> tuple[list[list[Generation]], list[Episode]]:
    """`group_size` episodes per task, played to their ends a turn at a time: every
    active episode's next reply in one `sample` call, every observation of a turn in one
    `respond_many` call. Returns the generations (per task, in the engine's layout; each
    with its `model_mask`) and the episodes, row by row, their last replies unverified.

    `positions`: the model's context length, when it has one (a table of learned
    positions). An episode whose context and next observation would leave no room for a
    reply ends there, its last reply final, as when it reaches `max_turns`."""
    G, n = group_size, len(tasks) * group_size
    role = observation_role(env)
    episodes = [Episode(tasks[i // G], observation_role=role) for i in range(n)]
    tokens: list[list[int]] = [[] for _ in range(n)]  # everything after the prompt
    masks: list[list[int]] = [[] for _ in range(n)]  # 1: the model's token, 0: an observation's
    finished = [False] * n  # whether the last reply ended itself

    def take(i: int, g: Generation) -> None:
        tokens[i] += g.token_ids
        masks[i] += [1] * len(g.token_ids)
        finished[i] = g.finished
        episodes[i].replies.append(tokenizer.decode(g.token_ids, skip_special_tokens=True))

    for i, g in enumerate(g for group in sample(prompt_ids, G, 0) for g in group):
        take(i, g)
    for turn in range(1, max_turns(env)):
        active = [i for i in range(n) if not episodes[i].done]
        going = []
        for i, observation in zip(active, respond(env, [episodes[i] for i in active]),
                                  strict=True):
            if observation is None:
                episodes[i].done = True
                continue
            ended = tokens[i][-1] if finished[i] and tokens[i] else None
            ids = observation_ids(tokenizer, observation, chat=chat, ended_with=ended,
                                  role=episodes[i].observation_role)
            context = len(prompt_ids[i // G]) + len(tokens[i]) + len(ids)
            over_budget = max_tokens and len(tokens[i]) + len(ids) + reply_tokens > max_tokens
            if over_budget or (positions is not None and context >= positions - 1):
                episodes[i].done = True  # no room for another reply
                continue
            episodes[i].observations.append(observation)
            tokens[i] += ids
            masks[i] += [0] * len(ids)
            going.append(i)
        if not going:
            break
        replies = sample([prompt_ids[i // G] + tokens[i] for i in going], 1, turn)
        for i, group in zip(going, replies, strict=True):
            take(i, group[0])
    for episode in episodes:  # the rest reached the last turn
        episode.done = True
    generations = [[Generation(tokens[i], finished[i], model_mask=masks[i])
                    for i in range(p * G, (p + 1) * G)] for p in range(len(tasks))]
    return generations, episodes


def episode_metrics(episodes: Sequence[Episode], completions: Sequence[Generation]) -> dict[str, float]:
    """Per-step figures of a multi-turn batch: mean turns and tool calls per episode,
    the tool runs that failed or timed out (counts), the mean tokens of an episode
    after its prompt (the model's and the observations'), and `env_time`: the wall
    seconds the environment took to answer every turn (tool runs, test feedback)."""
    n = max(len(episodes), 1)
    return {
        "turns": sum(e.turns for e in episodes) / n,
        "tool_calls": sum(e.tool_calls for e in episodes) / n,
        "tool_errors": sum(e.tool_errors for e in episodes),
        "tool_timeouts": sum(e.tool_timeouts for e in episodes),
        "tool_seconds": sum(e.tool_seconds for e in episodes),
        "episode_tokens": sum(len(g.token_ids) for g in completions) / n,
        "env_time": sum(e.env_seconds for e in episodes),
    }
