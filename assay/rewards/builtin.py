"""The built-in rewards: external (verifier, self_verify, ground_truth), intrinsic, and
the controls (random, format, incorrect_label).

Formulas: docs/rewards.md (usage: docs/training.md). Intrinsic rewards
read only the policy's own signals; external ones read the environment's verdict or
the policy acting as a verifier of its own answer.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from assay.envs import Environment, SelfVerifying, WrongLabelled
from assay.rewards.base import Reward, RewardError, RolloutGroup, check_values

# -- external --------------------------------------------------------------------------


class VerifierReward(Reward):
    """The environment's own verification: the verdict's score (partial credit allowed)."""

    name = "verifier"
    kind = "external"
    binary = True

    def score(self, group: RolloutGroup) -> list[float]:
        return [v.score for v in group.verdicts]


class GroundTruthReward(Reward):
    """The labelled oracle: 1 when the verdict is `correct`, else 0 (no partial credit)."""

    name = "ground_truth"
    kind = "external"
    binary = True

    def score(self, group: RolloutGroup) -> list[float]:
        return [1.0 if v.correct else 0.0 for v in group.verdicts]


class SelfVerifyReward(Reward):
    """The policy judges its own extracted answer; 1 when it says True.

    The environment builds the verification prompt (`verification_prompt(task, answer)`)
    and reads the reply (`parse_verification(reply)`); the group's `judge` samples the
    policy once per prompt. A completion without an answer scores 0 without a judgement.
    """

    name = "self_verify"
    kind = "external"
    binary = True
    needs = frozenset({"judge"})

    def check_env(self, env: Environment) -> None:
        if not isinstance(env, SelfVerifying):
            raise RewardError(
                f"reward 'self_verify' needs env {env.name!r} to define verification_prompt() "
                "and parse_verification() (see docs/define-an-environment.md)"
            )

    def score(self, group: RolloutGroup) -> list[float]:
        env = group.env
        self.check_env(env)
        assert isinstance(env, SelfVerifying)  # for the type checker; check_env raised otherwise
        if group.judge is None:
            raise RewardError(
                "reward 'self_verify' needs a judge (the trainer provides the policy)"
            )
        asked = [i for i, a in enumerate(group.answers) if a is not None]
        prompts = [env.verification_prompt(group.task, group.answers[i]) for i in asked]
        replies = group.judge(prompts) if prompts else []
        out = [0.0] * len(group)
        for i, reply in zip(asked, replies, strict=True):
            out[i] = 1.0 if env.parse_verification(reply) is True else 0.0
        return out


# -- intrinsic: ensemble-based ---------------------------------------------------------


class MajorityVoteReward(Reward):
    """1 for completions whose answer equals the group's most common answer (TTRL).

    Answers are compared under the env's `answer_key`; completions with no answer never
    win. Ties go to the answer seen first (`Counter.most_common`), which is deterministic.
    """

    name = "majority_vote"
    kind = "intrinsic"
    binary = True

    def score(self, group: RolloutGroup) -> list[float]:
        winner = majority_key(group)
        if winner is None:
            return [0.0] * len(group)
        return [1.0 if k is not None and k == winner else 0.0 for k in group.answer_keys()]


def majority_key(group: RolloutGroup):
    """The most common answer key of a group, or None when no completion has an answer."""
    keys = [k for k in group.answer_keys() if k is not None]
    return Counter(keys).most_common(1)[0][0] if keys else None


class SemanticEntropyReward(Reward):
    """The empirical probability of the completion's answer cluster (EMPO).

    Clusters are answers equal under `answer_key`; the probability is count / G. A
    completion without an answer scores 0, and when every answer is distinct all score 0.
    """

    name = "semantic_entropy"
    kind = "intrinsic"

    def score(self, group: RolloutGroup) -> list[float]:
        keys = group.answer_keys()
        counts = Counter(k for k in keys if k is not None)
        if not counts or max(counts.values()) == 1:
            return [0.0] * len(group)
        return [0.0 if k is None else counts[k] / len(group) for k in keys]


# -- intrinsic: certainty-based ---------------------------------------------------------


def _per_completion(group: RolloutGroup, score) -> list[float]:
    """`score(completion)` for each completion that has tokens; a completion with none gets
    the group's lowest score (0.0 when no completion has tokens).

    A mean over no tokens is undefined, and any constant would be wrong for some reward: 0.0
    is the best `trajectory_entropy` and `token_entropy` possible, and an empty product (1.0)
    the best `probability`. The group's lowest score never prefers an empty completion to a
    real one, and does not widen the group's spread of rewards.
    """
    values = [score(c) if len(c) else None for c in group.completions]
    present = [v for v in values if v is not None]
    floor = min(present) if present else 0.0
    return [floor if v is None else v for v in values]


class SelfCertaintyReward(Reward):
    """Mean over tokens of logsumexp(z_t) − mean_j z_t,j (Intuitor / RLIF)."""

    name = "self_certainty"
    kind = "intrinsic"
    needs = frozenset({"token_stats"})
    token_reads = "means"

    def score(self, group: RolloutGroup) -> list[float]:
        return _per_completion(group, lambda c: float(np.mean(c.self_certainty)))


class TokenEntropyReward(Reward):
    """Minus the mean full-distribution entropy over tokens (EM-RL token, RENT)."""

    name = "token_entropy"
    kind = "intrinsic"
    needs = frozenset({"token_stats"})
    token_reads = "means"

    def score(self, group: RolloutGroup) -> list[float]:
        return _per_completion(group, lambda c: -float(np.mean(c.entropies)))


class TrajectoryEntropyReward(Reward):
    """Mean log-prob of the sampled tokens: a one-sample estimate of −entropy per token."""

    name = "trajectory_entropy"
    kind = "intrinsic"
    needs = frozenset({"token_stats"})
    token_reads = "means"

    def score(self, group: RolloutGroup) -> list[float]:
        return _per_completion(group, lambda c: float(np.mean(c.logprobs)))


class ProbabilityReward(Reward):
    """Π_t π(y_t | ·) = exp(Σ_t log π): no length normalisation, hence length collapse (RLSC)."""

    name = "probability"
    kind = "intrinsic"
    needs = frozenset({"token_stats"})
    token_reads = "means"

    def score(self, group: RolloutGroup) -> list[float]:
        return _per_completion(group, lambda c: math.exp(float(np.sum(c.logprobs))))


# -- controls: baselines that know nothing of correctness ---------------------------------


class RandomReward(Reward):
    """A fair coin per completion: 1 with probability 0.5, from a stream seeded with `seed`.

    The floor every reward must beat: a reward no better than this teaches nothing about
    the task. Each draw is fresh, so the policy cannot learn which texts the coin favours
    (a hash of the text would be a fixed, learnable target). The stream lives in the reward
    object: the same run repeats its coins, a resumed run draws new ones after the resume.
    """

    name = "random"
    kind = "control"
    binary = True

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def score(self, group: RolloutGroup) -> list[float]:
        return self.rng.integers(0, 2, size=len(group)).astype(float).tolist()


class FormatReward(Reward):
    """1 when the env's extractor finds a non-blank answer in the completion, else 0.

    The control for "it learned the format, not the task": a reward whose gains this one
    matches only taught the policy to write an answer block. An empty block
    (`<answer></answer>`) is no answer: format rewards that paid for one were gamed by it.
    """

    name = "format"
    kind = "control"
    binary = True

    def score(self, group: RolloutGroup) -> list[float]:
        return [0.0 if a is None or not a.strip() else 1.0 for a in group.answers]


class IncorrectLabelReward(Reward):
    """1 when the completion is right for a fixed *wrong* label of its task, else 0.

    The control for "a wrong signal also helps": the env restates each task with a wrong
    label (`wrong_label`: countdown's target, math's answer, moved by 1 to 3) and its own
    verifier checks the completion against it. Gains a reward shares with this one come
    from the update itself (format, sharpening), not from knowing what is correct. A check
    against the wrong label that fails (`error` or `timeout`) scores 0 and is counted: the
    run logs its share as `reward/incorrect_label_failed` (the run's own verdicts, on the
    right label, still mask errors as for every reward).
    """

    name = "incorrect_label"
    kind = "control"
    binary = True

    def check_env(self, env: Environment) -> None:
        if not isinstance(env, WrongLabelled):
            raise RewardError(
                f"reward 'incorrect_label' needs env {env.name!r} to define wrong_label() "
                "(countdown and math do)"
            )

    def _verdicts(self, group: RolloutGroup) -> list:
        try:
            wrong = group.env.wrong_label(group.task)
        except ValueError as exc:
            raise RewardError(f"reward 'incorrect_label': {exc}") from None
        return group.env.verify_many([(wrong, text) for text in group.texts])

    def score(self, group: RolloutGroup) -> list[float]:
        return [1.0 if v.correct else 0.0 for v in self._verdicts(group)]

    def score_parts(self, group: RolloutGroup) -> tuple[list[float], dict[str, list[float]]]:
        verdicts = self._verdicts(group)
        values = check_values(self.name, [1.0 if v.correct else 0.0 for v in verdicts], len(group))
        failed = [1.0 if v.status in ("error", "timeout") else 0.0 for v in verdicts]
        return values, {self.name: values, f"{self.name}_failed": failed}


BUILTIN: dict[str, type[Reward]] = {
    cls.name: cls
    for cls in (
        VerifierReward,
        SelfVerifyReward,
        GroundTruthReward,
        MajorityVoteReward,
        SelfCertaintyReward,
        TokenEntropyReward,
        TrajectoryEntropyReward,
        ProbabilityReward,
        SemanticEntropyReward,
        RandomReward,
        FormatReward,
        IncorrectLabelReward,
    )
}
#: Names of the built-in rewards of each kind (a registered reward declares its own).
INTRINSIC = tuple(name for name, cls in BUILTIN.items() if cls.kind == "intrinsic")
EXTERNAL = tuple(name for name, cls in BUILTIN.items() if cls.kind == "external")
CONTROL = tuple(name for name, cls in BUILTIN.items() if cls.kind == "control")
