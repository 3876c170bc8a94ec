"""What a reward sees (`RolloutGroup`) and what it is (`Reward`).

A reward scores one prompt's whole group of G completions at once and returns one
float per completion: majority vote needs all G answers together, and the
intrinsic rewards need the policy's per-token statistics, so the group carries
token ids, log-probs, entropies and self-certainty next to the text.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assay.envs.base import Environment, Task
from assay.verifiers import Verdict

#: A judge answers verification prompts with the policy itself (for `self_verify`):
#: it takes prompts and returns one sampled reply per prompt.
Judge = Callable[[list[str]], list[str]]


class RewardError(ValueError):
    """A reward that is unknown, misconfigured, or returned something other than G finite floats."""


@dataclass
class Completion:
    """One sampled completion and the policy's statistics at each of its tokens.

    All per-token arrays have one entry per completion token (the end token included
    when the completion finished) and are computed from the logits divided by the
    sampling temperature:
      logprobs:       log π(y_t | x, y_<t) of the sampled token;
      entropies:      H(p_t), the entropy of the full next-token distribution;
      self_certainty: logsumexp(z_t) − mean_j z_t,j  (= KL(Uniform ‖ p_t) + log V).
    """

    text: str
    token_ids: list[int]
    logprobs: np.ndarray
    entropies: np.ndarray
    self_certainty: np.ndarray
    finished: bool = True  #: ended with the end token (False: cut at the length limit)

    def __len__(self) -> int:
        return len(self.token_ids)


@dataclass
class RolloutGroup:
    """One prompt, its task and its G completions: the unit every reward scores."""

    task: Task
    prompt: str
    completions: list[Completion]
    env: Environment
    judge: Judge | None = None  #: the policy as a verifier; only `self_verify` needs it
    _answers: list[str | None] | None = field(default=None, repr=False)
    _verdicts: list[Verdict] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.completions)

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.completions]

    @property
    def answers(self) -> list[str | None]:
        """The extracted answer of each completion (None where there is none)."""
        if self._answers is None:
            self._answers = [_safe_extract(self.env, text) for text in self.texts]
        return self._answers

    def answer_keys(self) -> list[Hashable | None]:
        """Answers under the env's equivalence (`answer_key`), None where there is no answer."""
        return [None if a is None else self.env.answer_key(self.task, a) for a in self.answers]

    @property
    def verdicts(self) -> list[Verdict]:
        """The environment's verdict on each completion (computed once, then cached)."""
        if self._verdicts is None:
            self._verdicts = verify_all(self.env, [(self.task, t) for t in self.texts])
        return self._verdicts

    def set_verdicts(self, verdicts: Sequence[Verdict]) -> None:
        """Install verdicts computed elsewhere (the trainer verifies a whole batch at once)."""
        if len(verdicts) != len(self.completions):
            raise ValueError(f"{len(verdicts)} verdicts for {len(self.completions)} completions")
        self._verdicts = list(verdicts)


def _safe_extract(env: Environment, text: str) -> str | None:
    try:
        return env.extract(text)
    except Exception:  # an extractor that breaks on odd text means "no answer"
        return None


def verify_all(env: Environment, pairs: Sequence[tuple[Task, str]]) -> list[Verdict]:
    """Verdicts for many (task, completion) pairs.

    Environments whose `verify` is cheap and bounded in-process (countdown overrides it)
    are called directly; the others go through `verify_many`'s worker processes, which
    enforce the hard time limit.
    """
    if type(env).verify is not Environment.verify:
        return [env.verify(task, text) for task, text in pairs]
    return env.verify_many(pairs)


class Reward(ABC):
    """A reward source: scores a `RolloutGroup`, one float per completion.

    `binary` rewards only ever say 1 (right) or 0 (wrong); the diagnostics compare them to
    ground truth directly. Continuous rewards are compared through the sign of their
    group-centred value (does the reward push this completion up?).
    """

    name: str = ""
    binary: bool = False

    @abstractmethod
    def score(self, group: RolloutGroup) -> list[float]:
        """One reward per completion of `group`."""

    def __call__(self, group: RolloutGroup) -> list[float]:
        values = self.score(group)
        return check_values(self.name or type(self).__name__, values, len(group))

    def __repr__(self) -> str:
        return self.name or type(self).__name__


def check_values(name: str, values: Any, expected: int) -> list[float]:
    """`values` as a list of `expected` finite floats, or a `RewardError` naming the reward."""
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise RewardError(f"reward {name!r} returned non-numbers: {exc}") from None
    if len(out) != expected:
        raise RewardError(f"reward {name!r} returned {len(out)} values for {expected} completions")
    bad = [v for v in out if not math.isfinite(v)]
    if bad:
        raise RewardError(f"reward {name!r} returned a non-finite value ({bad[0]})")
    return out


class FunctionReward(Reward):
    """A plain function `group -> list[float]` registered as a reward."""

    def __init__(
        self, name: str, fn: Callable[[RolloutGroup], Sequence[float]], binary: bool = False
    ):
        self.name, self.fn, self.binary = name, fn, binary

    def score(self, group: RolloutGroup) -> list[float]:
        return list(self.fn(group))


class WeightedSum(Reward):
    """Σ w_i · reward_i. A weight of 0 keeps a reward in the metrics without training on it."""

    def __init__(self, parts: Sequence[tuple[float, Reward]]):
        if not parts:
            raise RewardError("a weighted reward needs at least one part")
        self.parts = list(parts)
        self.name = " + ".join(f"{w:g}*{r.name}" for w, r in self.parts)
        self.binary = len(self.parts) == 1 and self.parts[0][0] == 1.0 and self.parts[0][1].binary
        self.last_parts: dict[str, list[float]] = {}

    def score(self, group: RolloutGroup) -> list[float]:
        total = np.zeros(len(group))
        self.last_parts = {}
        for weight, reward in self.parts:
            values = reward(group)
            self.last_parts[reward.name] = values
            total += weight * np.asarray(values)
        return total.tolist()
