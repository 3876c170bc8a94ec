"""Reward and diagnostic edges found by a mutation run (docs/development.md): unreadable
self-verification replies, empty completions, binary agreement at 0.5, answers of None,
and the collapse detector's strict threshold and defaults."""

from __future__ import annotations

import math

import numpy as np
import pytest

from assay import organism
from assay.envs import get_env
from assay.rewards import (
    BUILTIN,
    Completion,
    FunctionReward,
    Reward,
    RewardError,
    RolloutGroup,
    WeightedSum,
    get_reward,
)
from assay.training.diagnostics import (
    CollapseDetector,
    distinct_answers,
    label_accuracy,
    repetition_rate,
    reward_accuracy,
    said_correct,
)
from assay.verifiers import Verdict

ENV = get_env("countdown", **organism.ENV_OPTIONS)  # the organism's compact form
TASK = ENV.make_task({"numbers": [5, 1, 2], "target": 7})


def comp(text: str, logprobs: list[float]) -> Completion:
    values = np.array(logprobs, dtype=float)
    return Completion(text, list(range(len(values))), values, -values, 1 - values)


def group(texts, logprobs=None, judge=None) -> RolloutGroup:
    logprobs = logprobs or [[-0.5]] * len(texts)
    comps = [comp(t, lp) for t, lp in zip(texts, logprobs, strict=True)]
    return RolloutGroup(TASK, TASK.prompt, comps, ENV, judge=judge)


# -- self_verify ------------------------------------------------------------------------


def test_an_unreadable_verification_reply_never_earns_reward():
    replies = ["T", "F", "", "maybe", "TF?", "\x00"]
    assert [ENV.parse_verification(r) for r in replies[:2]] == [True, False]
    assert all(ENV.parse_verification(r) is None for r in replies[2:])
    g = group(["5+1*2"] * len(replies), judge=lambda prompts: replies[: len(prompts)])
    assert get_reward("self_verify")(g) == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


# -- empty completions --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["trajectory_entropy", "token_entropy", "self_certainty", "probability"])
def test_an_empty_completion_gets_the_groups_lowest_score_never_the_best(name):
    g = group(["5+1*2", "5+1+2", ""], logprobs=[[-0.1], [-2.0, -3.0], []])
    values = get_reward(name)(g)
    assert values[2] == min(values[:2]) and values[0] != values[1], values
    assert values[2] < max(values[:2])


def test_empty_completions_alone_score_zero():
    for name in ("trajectory_entropy", "token_entropy", "self_certainty", "probability"):
        assert get_reward(name)(group(["", ""], logprobs=[[], []])) == [0.0, 0.0]


def test_the_certainty_rewards_on_one_token_completions_by_hand():
    g = group(["a", "b"], logprobs=[[-0.25], [-2.0]])
    assert get_reward("trajectory_entropy")(g) == [-0.25, -2.0]
    assert get_reward("token_entropy")(g) == [-0.25, -2.0]  # entropies are -logprobs here
    assert get_reward("self_certainty")(g) == [1.25, 3.0]
    assert get_reward("probability")(g) == pytest.approx([math.exp(-0.25), math.exp(-2.0)])


# -- diagnostics --------------------------------------------------------------------------


def test_a_binary_reward_of_exactly_one_half_says_correct():
    assert said_correct([0.5, 0.4999, 1.0, 0.0], binary=True) == [True, False, True, False]
    assert said_correct([0.5, 0.5], binary=True) == [True, True]  # not "above the mean"
    assert said_correct([1.0, 1.0], binary=True) == [True, True]
    assert reward_accuracy([[0.5, 0.4999]], [[True, False]], binary=True) == 1.0


def test_a_continuous_reward_says_correct_only_strictly_above_the_mean():
    assert said_correct([1.0, 1.0, 1.0], binary=False) == [False, False, False]
    assert said_correct([0.0, 0.5, 1.0], binary=False) == [False, False, True]


def test_answers_of_none_are_not_counted_as_distinct_answers():
    assert group(["", "", "5+1*2"]).answer_keys()[:2] == [None, None]
    assert distinct_answers([group(["", "", "5+1*2"])]) == 1.0
    assert distinct_answers([group(["", ""])]) == 0.0
    assert distinct_answers([group(["5+1*2", "5+1+2", ""]), group(["2*1+5", ""])]) == 1.5


def test_a_group_without_answers_has_a_wrong_label():
    silent = group(["", ""])
    assert label_accuracy([silent], [[True, True]]) == 0.0  # truth cannot rescue "no answer"


def test_the_collapse_detector_defaults_and_its_strict_threshold():
    detector = CollapseDetector()
    assert (detector.signal, detector.threshold) == ("reward_accuracy", 0.01)
    assert detector.update(1, {"reward_accuracy": 0.01}) is None  # at the threshold: no collapse
    assert detector.update(2, {"reward_accuracy": None}) is None
    assert detector.update(3, {"reward": 0.0}) is None
    fired = detector.update(4, {"reward_accuracy": 0.0099})
    assert fired is not None and fired.step == 4 and fired.threshold == 0.01
    assert detector.update(5, {"reward_accuracy": 0.0}) is None  # reported once


def test_a_completion_counts_its_tokens_and_is_finished_unless_told_otherwise():
    c = Completion("5+1*2", [3, 4, 5], np.zeros(3), np.zeros(3), np.zeros(3))
    assert len(c) == 3 and c.finished is True
    assert Completion("5+", [3], np.zeros(1), np.zeros(1), np.zeros(1), finished=False).finished is False


# -- the Reward base class ------------------------------------------------------------------


class Nameless(Reward):
    kind = "intrinsic"

    def __init__(self, values):
        self.values = values

    def score(self, group):
        return self.values


def test_a_reward_is_continuous_unless_it_says_binary():
    assert Nameless([0.0]).binary is False
    assert FunctionReward("f_edges", lambda g: [0.0] * len(g), kind="intrinsic").binary is False
    assert FunctionReward("f_edges", lambda g: [0.0] * len(g), kind="intrinsic", binary=True).binary


def test_the_default_score_parts_is_the_reward_as_its_own_part():
    reward = FunctionReward("own_part_edges", lambda g: [0.25, 0.75], kind="intrinsic")
    assert reward.score_parts(group(["1", "2"])) == ([0.25, 0.75], {"own_part_edges": [0.25, 0.75]})


def test_a_function_reward_must_declare_a_known_kind():
    with pytest.raises(RewardError, match="must declare its kind"):
        FunctionReward("kindless_edges", lambda g: [], kind="bogus")


def test_a_nameless_reward_is_named_by_its_class_in_errors():
    with pytest.raises(RewardError, match="'Nameless' returned 1 values for 2"):
        Nameless([1.0])(group(["1", "2"]))
    with pytest.raises(RewardError, match="'Nameless' returned non-numbers"):
        Nameless(["high", "low"])(group(["1", "2"]))
    with pytest.raises(RewardError, match="non-numbers"):
        Nameless(None)(group(["1", "2"]))


def test_a_weighted_sum_needs_a_part():
    with pytest.raises(RewardError, match="at least one part"):
        WeightedSum([])


def test_a_group_is_built_with_its_verdicts_which_must_match_the_completions():
    comps = [comp(t, [-0.5]) for t in ("5+1*2", "5+1+2")]
    with pytest.raises(ValueError, match="1 verdicts for 2 completions"):
        RolloutGroup(TASK, TASK.prompt, comps, ENV, verdicts=[Verdict.right("x")])
    given = RolloutGroup(TASK, TASK.prompt, comps, ENV,
                         verdicts=[Verdict.wrong("a"), Verdict.right("b")])  # used, not recomputed
    assert [v.status for v in given.verdicts] == ["incorrect", "correct"]
    texts = ["5+1*2", "5+1+2", "5+1*2"]
    alone = group(texts)  # none given: verified at once, as one batch of its own
    assert ENV.last_batch.pairs == 3 and ENV.last_batch.checked == 2
    assert [v.status for v in alone.verdicts] == ["correct", "incorrect", "correct"]


def test_a_weighted_sum_is_binary_only_as_one_binary_reward_at_weight_one():
    verifier, certainty = get_reward("verifier"), get_reward("self_certainty")
    assert WeightedSum([(1.0, verifier)]).binary is True
    assert WeightedSum([(0.5, verifier)]).binary is False
    assert WeightedSum([(1.0, certainty)]).binary is False
    assert WeightedSum([(1.0, verifier), (1.0, get_reward("ground_truth"))]).binary is False
    assert WeightedSum([(1.0, verifier), (0.0, certainty)]).kind == "mixed"
    assert WeightedSum([(1.0, certainty)]).kind == "intrinsic"


def test_a_reward_shows_its_name_or_else_its_class():
    assert repr(get_reward("verifier")) == "verifier"
    assert repr(Nameless([])) == "Nameless"


def test_which_builtin_rewards_are_binary():
    binary = {name: cls.binary for name, cls in BUILTIN.items()}
    assert binary == {
        "verifier": True,
        "self_verify": True,
        "ground_truth": True,
        "majority_vote": True,
        "self_certainty": False,
        "token_entropy": False,
        "trajectory_entropy": False,
        "probability": False,
        "semantic_entropy": False,
        "random": True,
        "format": True,
        "incorrect_label": True,
    }


def test_self_verify_on_an_env_without_verification_is_a_reward_error_when_scoring():
    sorting = get_env("sorting")  # the example plug-in has no verification prompt
    task = sorting.make_task(sorting.generate(1, seed=0)[0].fields)
    g = RolloutGroup(task, task.prompt, [comp("1 2 3", [-0.5])], sorting, judge=lambda ps: ["T"] * len(ps))
    with pytest.raises(RewardError, match="self_verify.*verification_prompt"):
        get_reward("self_verify")(g)


def test_the_builtin_rewards_by_kind():
    from assay.rewards.builtin import CONTROL, EXTERNAL, INTRINSIC

    assert set(EXTERNAL) == {"verifier", "self_verify", "ground_truth"}
    assert set(CONTROL) == {"random", "format", "incorrect_label"}
    assert set(INTRINSIC) == set(BUILTIN) - set(EXTERNAL) - set(CONTROL)


def test_repetition_rate_at_its_boundaries():
    assert repetition_rate([]) == 0.0  # no completions
    assert repetition_rate([[7] * 4]) == 0.0  # one 4-gram: nothing to repeat
    assert repetition_rate([[7] * 5]) == 0.5  # two 4-grams, the same one
    assert repetition_rate([[1, 2, 3, 4, 5]]) == 0.0


def test_diagnostics_refuse_rewards_and_truth_of_different_lengths():
    with pytest.raises(ValueError):
        reward_accuracy([[1.0, 0.0]], [[True]], binary=True)
    with pytest.raises(ValueError):
        reward_accuracy([[1.0], [0.0]], [[True]], binary=True)
    with pytest.raises(ValueError):
        label_accuracy([group(["5+1+2", "5+1*2", "5+1*2"])], [[False, False]])
    with pytest.raises(ValueError):
        label_accuracy([group(["5+1*2"])], [[True], [False]])


def test_a_unanimous_correct_vote_is_a_correct_label():
    assert label_accuracy([group(["5+1*2", "5+1*2"])], [[True, True]]) == 1.0
    assert label_accuracy([group(["5+1+2", "5+1+2"])], [[False, False]]) == 0.0
