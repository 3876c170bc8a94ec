"""Multi-turn episodes: the environment answers each model turn with the next message, or
ends the episode.

A single-turn environment (every built-in one by default) ends each episode after the
model's first reply, which is then verified as always. An environment that declares
`max_turns > 1` may instead answer a reply with an *observation*, a message the model
reads before its next turn: the output of the Python it ran (`assay/envs/tools.py`), the
visible tests its program failed. The episode ends when the environment answers `None`
or after `max_turns` replies; its verdict is the environment's verdict on the last reply
(`Environment.verify_many`, as for one turn), its score discounted per earlier reply where
the env has a `turn_discount` option (`discounted`).

`run_episodes` drives whole groups of episodes turn by turn: every active episode's
next reply is generated in one call and every observation of a turn is made in one
`respond_many` call, so the tool calls of a turn reach the sandbox as one batch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assay.envs.task import Task
from assay.errors import AssayError
from assay.verifiers import Verdict

if TYPE_CHECKING:
    from assay.envs.base import Environment


@dataclass
class Episode:
    """One task's conversation so far: the model's replies and the environment's answers
    (`observations[i]` follows `replies[i]`), and what its tool calls cost."""

    task: Task
    replies: list[str] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    done: bool = False
    tool_calls: int = 0
    tool_errors: int = 0  #: tool runs that ended in an error, a crash or out of memory
    tool_timeouts: int = 0
    tool_seconds: float = 0.0  #: the sandbox's wall time of every tool run, summed
    #: this episode's share of the wall time the environment took to answer its turns (a
    #: turn's answers are made in one batch; each episode of the batch carries 1/n of it)
    env_seconds: float = 0.0
    verdict: Verdict | None = None
    #: the chat role its observations take: "tool" for a tool's output, "user" otherwise
    observation_role: str = "user"

    @property
    def turns(self) -> int:
        return len(self.replies)

    def messages(self) -> list[dict[str, str]]:
        """The conversation as chat messages: the prompt, then replies and observations."""
        out = [{"role": "user", "content": self.task.prompt}]
        for i, reply in enumerate(self.replies):
            out.append({"role": "assistant", "content": reply})
            if i < len(self.observations):
                out.append({"role": self.observation_role, "content": self.observations[i]})
        return out

    @property
    def final_reply(self) -> str:
        return self.replies[-1] if self.replies else ""


class EpisodeError(AssayError, ValueError):
    """A multi-turn env where a command plays only single turns: one line."""


def require_single_turn(env: Environment, command: str) -> None:
    """Refuse, in one line, a multi-turn env in a command that plays one turn per task."""
    if max_turns(env) > 1:
        raise EpisodeError(
            f"{command}: env {env.name!r} is set for episodes of up to {max_turns(env)} turns "
            f"(env.tools, env.feedback, env.max_turns), and {command} plays one turn per task; "
            "assay train (the default backend) plays whole episodes"
        )


def max_turns(env: Environment) -> int:
    """How many replies an episode of `env` may have: its `max_turns` option, else 1."""
    value = getattr(env.options, "max_turns", 1)
    return value if isinstance(value, int) and value >= 1 else 1


def discounted(env: Environment, episodes: Sequence[Episode], verdicts: Sequence[Verdict]) -> list[Verdict]:
    """Each episode's verdict with its score multiplied by the env's `turn_discount` once
    for every reply before the last (the status is kept: a late right answer is still
    right). The verdicts unchanged where the env has no discount."""
    discount = getattr(env.options, "turn_discount", 1.0)
    if discount == 1.0:
        return list(verdicts)
    return [v if e.turns <= 1 else dataclasses.replace(v, score=v.score * discount ** (e.turns - 1))
            for e, v in zip(episodes, verdicts, strict=True)]


def observation_role(env: Environment) -> str:
    """The chat role of `env`'s observations: its `observation_role`, else "user"."""
    return getattr(env, "observation_role", "user")


def respond(env: Environment, episodes: Sequence[Episode]) -> list[str | None]:
    """The environment's answer to each episode's last reply (None ends the episode):
    its `respond_many` when it has one, else None for all (a single-turn env)."""
    answer = getattr(env, "respond_many", None)
    if answer is None or max_turns(env) == 1:
        return [None] * len(episodes)
    start = time.perf_counter()
    observations = list(answer(episodes))
    share = (time.perf_counter() - start) / max(len(episodes), 1)
    for episode in episodes:
        episode.env_seconds += share
    if len(observations) != len(episodes):
        raise RuntimeError(f"{type(env).__name__}.respond_many answered {len(observations)} "
                           f"of {len(episodes)} episodes")
    return observations


def run_episodes(
    env: Environment,
    tasks: Sequence[Task],
    generate: Callable[[list[Episode]], list[str]],
    *,
    verify: bool = True,
) -> list[Episode]:
    """Play one episode per task to its end and verify the last replies.

    `generate(episodes)` returns the next reply of each episode given to it (the active
    ones, in order); `episode.messages()` is what the model has seen so far.
    """
    role = observation_role(env)
    episodes = [Episode(task, observation_role=role) for task in tasks]
    limit = max_turns(env)
    for turn in range(limit):
        active = [e for e in episodes if not e.done]
        if not active:
            break
        replies = generate(active)
        if len(replies) != len(active):
            raise RuntimeError(f"generate returned {len(replies)} replies for {len(active)} episodes")
        for episode, reply in zip(active, replies, strict=True):
            episode.replies.append(reply)
        last_turn = turn == limit - 1
        answers: list[Any] = [None] * len(active) if last_turn else respond(env, active)
        for episode, observation in zip(active, answers, strict=True):
            if observation is None:
                episode.done = True
            else:
                episode.observations.append(observation)
    if verify:
        verdicts = env.verify_many([(e.task, e.final_reply) for e in episodes])
        verdicts = discounted(env, episodes, verdicts)
        for episode, verdict in zip(episodes, verdicts, strict=True):
            episode.verdict = verdict
    return episodes
