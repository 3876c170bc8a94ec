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
from typing import Any, ClassVar

import numpy as np

from assay.envs import Environment, Task
from assay.errors import AssayError
from assay.verifiers import Verdict

#: What a reward is grounded in. "external": something outside the policy decides (a
#: verifier, ground truth, the policy judging an answer as a separate verification
#: task); "intrinsic": only the policy's own signals (its confidence, its agreement with
#: itself); "control": neither: a baseline that knows nothing of correctness (a coin,
#: the mere presence of an answer), which a real reward must beat. The lab groups runs by
#: kind; a weighted sum of several kinds is "mixed".
KINDS = ("external", "intrinsic", "control")

#: A judge answers verification prompts with the policy itself (for `self_verify`):
#: it takes prompts and returns one sampled reply per prompt.
Judge = Callable[[list[str]], list[str]]


class RewardError(AssayError, ValueError):
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


class PendingStats:
    """Stands for a completion's per-token arrays until the trainer's loss pass computes
    them (a micro-batched step whose rewards read none). A reward that reads them without
    saying so (`needs = {"token_stats"}`) fails here, loudly, instead of reading nothing."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise RewardError(
            "a reward read the per-token statistics (logprobs, entropies, self_certainty) "
            "without declaring needs = frozenset({'token_stats'}); declare it so the trainer "
            "computes them before the rewards"
        )

    __array__ = __len__ = __getitem__ = __iter__ = __float__ = __bool__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = _refuse

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._refuse()

    def __repr__(self) -> str:
        return "PENDING"


#: the one placeholder (see `PendingStats`)
PENDING: Any = PendingStats()


@dataclass
class RolloutGroup:
    """One prompt, its task and its G completions, with the environment's verdict on each:
    the unit every reward scores.

    Build it with the verdicts of the batch it came in (`verdicts=`, from one
    `env.verify_many` over the whole batch, as the trainer does); a group built without
    them verifies its completions at once, as a batch of its own.
    """

    task: Task
    prompt: str
    completions: list[Completion]
    env: Environment
    judge: Judge | None = None  #: the policy as a verifier; only `self_verify` needs it
    verdicts: list[Verdict] = None  # type: ignore[assignment]  # (filled in __post_init__)
    _answers: list[str | None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.verdicts is None:
            self.verdicts = self.env.verify_many([(self.task, c.text) for c in self.completions])
        self.verdicts = list(self.verdicts)
        if len(self.verdicts) != len(self.completions):
            raise ValueError(f"{len(self.verdicts)} verdicts for {len(self.completions)} completions")

    def __len__(self) -> int:
        return len(self.completions)

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.completions]

    @property
    def answers(self) -> list[str | None]:
        """The extracted answer of each completion (None where there is none)."""
        if self._answers is None:
            self._answers = [safe_extract(self.env, text) for text in self.texts]
        return self._answers

    def answer_keys(self) -> list[Hashable | None]:
        """Answers under the env's equivalence (`answer_key`), None where there is no answer."""
        return [None if a is None else self.env.answer_key(self.task, a) for a in self.answers]


def safe_extract(env: Environment, text: str) -> str | None:
    """The env's answer in `text`, or None (also when the extractor breaks on odd text)."""
    try:
        return env.extract(text)
    except Exception:  # an extractor that breaks on odd text means "no answer"
        return None


class Reward(ABC):
    """A reward source: scores a `RolloutGroup`, one float per completion.

    Every reward declares its `kind` (one of `KINDS`: "external", "intrinsic" or "control").
    `binary` rewards only ever say 1 (right) or 0 (wrong); the diagnostics compare them to
    ground truth directly. Continuous rewards are compared through the sign of their
    group-centred value (does the reward push this completion up?).
    """

    name: str = ""
    kind: ClassVar[str] = ""
    binary: bool = False
    #: what the reward reads beyond the completions' text and the env: "token_stats" (the
    #: policy's per-token log-probs, entropies and self-certainty) or "judge" (the policy
    #: answering verification prompts). Trainers that cannot supply one refuse the reward
    #: up front (`assay.integrations.trl`).
    needs: ClassVar[frozenset[str]] = frozenset()
    #: with "token_stats": which figures of the per-token arrays it reads. "means": only
    #: each completion's mean entropy and self-certainty, its summed log-prob and its
    #: length, the aggregates a run's rollouts store, so `assay rescore` recomputes it;
    #: "tokens" (the default, the safe guess for a plug-in): anything else (a minimum, the
    #: last token), which rescore refuses rather than recompute wrong.
    token_reads: ClassVar[str] = "tokens"

    @abstractmethod
    def score(self, group: RolloutGroup) -> list[float]:
        """One reward per completion of `group`."""

    def check_env(self, env: Environment) -> None:
        """Raise a one-line `RewardError` if this reward cannot score `env`'s completions.

        Called once when a run starts, before any model is loaded, so that a missing
        capability (self_verify on an env with no verification prompt) is not found
        mid-run. The default accepts every env.
        """
        return None

    def score_parts(self, group: RolloutGroup) -> tuple[list[float], dict[str, list[float]]]:
        """The group's rewards, and each named part's values (a plain reward is its own part)."""
        values = self(group)
        return values, {self.name: values}

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
        self,
        name: str,
        fn: Callable[[RolloutGroup], Sequence[float]],
        *,
        kind: str,
        binary: bool = False,
    ):
        check_kind(name, kind)
        self.name, self.fn, self.kind, self.binary = name, fn, kind, binary  # type: ignore[misc]

    def score(self, group: RolloutGroup) -> list[float]:
        values = self.fn(group)
        try:  # None, a number: named here, as `check_values` names a wrong list
            return list(values)
        except TypeError:
            raise RewardError(f"reward {self.name!r} returned {type(values).__name__}, "
                              "not a list of one number per completion") from None


class WeightedSum(Reward):
    """Σ w_i · reward_i. A weight of 0 keeps a reward in the metrics without training on it."""

    def __init__(self, terms: Sequence[tuple[float, Reward]]):
        if not terms:
            raise RewardError("a weighted reward needs at least one part")
        for weight, reward in terms:  # every way of building one comes here (a spec, pairs)
            if not math.isfinite(weight):
                raise RewardError(f"reward {reward.name!r}: its weight is {weight}, not a finite number")
        self.terms = list(terms)
        self.name = " + ".join(f"{w:g}*{r.name}" for w, r in self.terms)
        self.binary = len(self.terms) == 1 and self.terms[0][0] == 1.0 and self.terms[0][1].binary
        kinds = {r.kind for _, r in self.terms}
        self.kind = kinds.pop() if len(kinds) == 1 else "mixed"  # type: ignore[misc]
        self.needs = frozenset().union(*(r.needs for _, r in self.terms))  # type: ignore[misc]
        self.token_reads = ("means" if all(r.token_reads == "means" or "token_stats" not in r.needs  # type: ignore[misc]
                                           for _, r in self.terms) else "tokens")

    def check_env(self, env: Environment) -> None:
        for _, reward in self.terms:
            reward.check_env(env)

    def score_parts(self, group: RolloutGroup) -> tuple[list[float], dict[str, list[float]]]:
        parts: dict[str, list[float]] = {}
        for _, reward in self.terms:  # each part's own parts too (incorrect_label's failures)
            parts.update(reward.score_parts(group)[1])
        total = np.zeros(len(group))
        for weight, reward in self.terms:
            total += weight * np.asarray(parts[reward.name])
        values = check_values(self.name, total.tolist(), len(group))
        return values, parts

    def score(self, group: RolloutGroup) -> list[float]:
        return self.score_parts(group)[0]


def check_kind(name: str, kind: str) -> None:
    """A `RewardError` unless `kind` is one of `KINDS`."""
    if kind not in KINDS:
        raise RewardError(
            f"reward {name!r} must declare its kind: 'external' (grounded outside the policy), "
            f"'intrinsic' (the policy's own signals) or 'control' (a baseline that knows "
            f"nothing of correctness), got {kind!r}"
        )
