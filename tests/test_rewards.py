"""Every built-in reward against hand-computed values, and each one varies with its input."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from assay import organism
from assay.envs import get_env
from assay.envs.base import Task
from assay.rewards import (
    BUILTIN,
    Completion,
    Reward,
    RewardError,
    RolloutGroup,
    WeightedSum,
    get_reward,
    register_reward,
    reward_names,
)

ENV = get_env("countdown", **organism.ENV_OPTIONS)  # the organism's compact form
TASK = ENV.make_task({"numbers": [5, 1, 2], "target": 7})  # 5+1*2 = 7


def completion(text: str, logprobs, entropies=None, certainty=None) -> Completion:
    n = len(logprobs)
    return Completion(
        text=text,
        token_ids=list(range(n)),
        logprobs=np.array(logprobs, dtype=float),
        entropies=np.array(entropies if entropies is not None else [0.5] * n, dtype=float),
        self_certainty=np.array(certainty if certainty is not None else [1.0] * n, dtype=float),
    )


def group(texts, logprobs=None, entropies=None, certainty=None, judge=None, env=ENV, task=TASK):
    logprobs = logprobs or [[-0.1, -0.2]] * len(texts)
    entropies = entropies or [None] * len(texts)
    certainty = certainty or [None] * len(texts)
    comps = [
        completion(t, lp, e, c)
        for t, lp, e, c in zip(texts, logprobs, entropies, certainty, strict=True)
    ]
    return RolloutGroup(task, task.prompt, comps, env, judge=judge)


# 5+1*2 = 7 (right); 2*1+5 = 7 (right, a different string); 5+1+2 = 8 (wrong); "5)" invalid
TEXTS = ["5+1*2", "5+1*2", "2*1+5", "5+1+2", "5)"]


def test_compact_prompt_and_extraction():
    assert TASK.prompt == "5 1 2>007:"
    assert ENV.extract(" 5+1*2 ") == "5+1*2"
    assert ENV.extract("") is None
    assert ENV.verify(TASK, "5 + 1*2").correct


def test_verifier_and_ground_truth():
    assert get_reward("verifier")(group(TEXTS)) == [1, 1, 1, 0, 0]
    env = get_env("countdown", prompt_style="compact", format_score=0.1)
    task = env.make_task({"numbers": [5, 1, 2], "target": 7})
    g = group(TEXTS, env=env, task=task)
    assert get_reward("verifier")(g) == [1, 1, 1, 0.1, 0.0]  # partial credit for the wrong one
    assert get_reward("ground_truth")(g) == [1, 1, 1, 0, 0]  # the oracle gives none


def test_majority_vote_by_text_and_by_value():
    assert get_reward("majority_vote")(group(TEXTS)) == [1, 1, 0, 0, 0]
    by_value = get_env("countdown", prompt_style="compact", vote_key="value")
    task = by_value.make_task({"numbers": [5, 1, 2], "target": 7})
    # by value, 5+1*2 and 2*1+5 are one answer (7): three votes beat one
    assert get_reward("majority_vote")(group(TEXTS, env=by_value, task=task)) == [1, 1, 1, 0, 0]
    assert by_value.answer_key(task, "2*1+5") == Fraction(7)


def test_majority_vote_ignores_completions_without_answers():
    assert get_reward("majority_vote")(group(["", " ", "5+1+2"])) == [0, 0, 1]
    assert get_reward("majority_vote")(group(["", " "])) == [0, 0]


def test_semantic_entropy_is_cluster_probability():
    # clusters: {5+1*2: 2}, {2*1+5: 1}, {5+1+2: 1}, {5): 1}; 5 completions
    assert get_reward("semantic_entropy")(group(TEXTS)) == [0.4, 0.4, 0.2, 0.2, 0.2]
    assert get_reward("semantic_entropy")(group(["1", "2", "3"])) == [0, 0, 0]  # all distinct
    assert get_reward("semantic_entropy")(group(["1", "1", ""])) == [2 / 3, 2 / 3, 0]


def test_certainty_rewards_by_hand():
    g = group(
        ["a", "b"],
        logprobs=[[-1.0, -3.0], [-0.5]],
        entropies=[[2.0, 1.0], [0.25]],
        certainty=[[4.0, 2.0], [1.5]],
    )
    assert get_reward("self_certainty")(g) == [3.0, 1.5]
    assert get_reward("token_entropy")(g) == [-1.5, -0.25]
    assert get_reward("trajectory_entropy")(g) == [-2.0, -0.5]
    assert get_reward("probability")(g) == pytest.approx([math.exp(-4.0), math.exp(-0.5)])


def test_self_verify_asks_the_judge_about_each_answer():
    asked = []

    def judge(prompts):
        asked.extend(prompts)
        return ["T" if "*" in p else "F" for p in prompts]

    values = get_reward("self_verify")(group(["5+1*2", "5+1+2", "", "2*1+5"], judge=judge))
    assert values == [1, 0, 0, 1]  # no answer: no question, reward 0
    assert asked == ["5 1 2>007:5+1*2?", "5 1 2>007:5+1+2?", "5 1 2>007:2*1+5?"]


def test_self_verify_parses_boxed_replies_in_the_tinyzero_form():
    env = get_env("countdown")
    task = env.make_task({"numbers": [5, 1, 2], "target": 7})
    g = group(
        ["<answer>5+1*2</answer>", "<answer>5+1+2</answer>"],
        env=env,
        task=task,
        judge=lambda ps: ["so \\boxed{True}", "\\boxed{True} no, \\boxed{False}"],
    )
    assert get_reward("self_verify")(g) == [1, 0]
    assert "\\boxed{True}" in env.verification_prompt(task, "5+1*2")


def test_self_verify_needs_a_judge():
    with pytest.raises(RewardError, match="judge"):
        get_reward("self_verify")(group(["5+1*2"]))


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_each_reward_varies_with_its_input(name):
    """The trap in one public implementation: a reward stuck at a constant."""
    judge = lambda prompts: ["T" if "*" in p else "F" for p in prompts]  # noqa: E731
    lp = [[-0.1, -0.1], [-0.1, -0.1], [-2.0, -1.0, -3.0], [-0.7, -0.2], [-0.3]]
    ent = [[0.1, 0.2], [0.1, 0.2], [2.0, 1.0, 1.5], [0.4, 0.4], [0.9]]
    cert = [[5.0, 4.0], [5.0, 4.0], [0.5, 1.0, 0.2], [2.0, 2.0], [3.0]]
    texts = TEXTS[:-1] + [""] if name == "format" else TEXTS  # compact: "" has no answer
    if name == "incorrect_label":
        texts = TEXTS[:-1] + ["5+2-1"]  # the task's fixed wrong target is 6
    values = get_reward(name)(group(texts, lp, ent, cert, judge=judge))
    assert len(set(values)) > 1, f"{name} gave {values}"


def test_intrinsic_rewards_differ_on_the_same_rollouts():
    lp = [[-0.1, -0.1], [-0.1, -0.1], [-2.0, -1.0, -3.0], [-0.7, -0.2], [-0.3]]
    ent = [[0.1, 0.2], [0.1, 0.2], [2.0, 1.0, 1.5], [0.4, 0.4], [0.9]]
    cert = [[5.0, 4.0], [5.0, 4.0], [0.5, 1.0, 0.2], [2.0, 2.0], [3.0]]
    g = group(TEXTS, lp, ent, cert)
    names = (
        "majority_vote",
        "self_certainty",
        "token_entropy",
        "trajectory_entropy",
        "probability",
        "semantic_entropy",
    )
    results = {n: tuple(np.round(get_reward(n)(g), 6)) for n in names}
    assert len(set(results.values())) == len(names), results


def test_weighted_combination_and_its_parts():
    reward = get_reward("0.5*verifier + 2*majority_vote")
    assert isinstance(reward, WeightedSum)
    g = group(TEXTS)
    assert reward(g) == [2.5, 2.5, 0.5, 0.0, 0.0]
    values, parts = reward.score_parts(g)
    assert values == [2.5, 2.5, 0.5, 0.0, 0.0]
    assert parts == {"verifier": [1, 1, 1, 0, 0], "majority_vote": [1, 1, 0, 0, 0]}
    assert reward.kind == "mixed"
    assert get_reward("0.5*verifier + ground_truth").kind == "external"
    assert get_reward([(1.0, "verifier"), (-1.0, "ground_truth")])(g) == [0.0] * 5


def test_register_function_and_class():
    @register_reward("answer_length_test", kind="intrinsic")
    def answer_length(group):
        return [len(a or "") for a in group.answers]

    @register_reward
    class Constant(Reward):
        name = "constant_test"
        kind = "external"

        def score(self, group):
            return [0.25] * len(group)

    assert "answer_length_test" in reward_names()
    assert get_reward("answer_length_test")(group(["5+1*2", "", "12"])) == [5, 0, 2]
    assert get_reward("constant_test + verifier")(group(["5+1*2"])) == [1.25]
    assert get_reward("answer_length_test").kind == "intrinsic"
    assert get_reward("constant_test").kind == "external"


def test_every_reward_declares_its_kind():
    assert {n: get_reward(n).kind for n in BUILTIN} == {
        "verifier": "external",
        "self_verify": "external",
        "ground_truth": "external",
        "majority_vote": "intrinsic",
        "self_certainty": "intrinsic",
        "token_entropy": "intrinsic",
        "trajectory_entropy": "intrinsic",
        "probability": "intrinsic",
        "semantic_entropy": "intrinsic",
        "random": "control",
        "format": "control",
        "incorrect_label": "control",
    }
    with pytest.raises(RewardError, match="must declare its kind"):
        register_reward("kindless_test")(lambda group: [0.0] * len(group))
    with pytest.raises(RewardError, match="must declare its kind"):

        @register_reward
        class Kindless(Reward):
            name = "kindless_class_test"

            def score(self, group):
                return [0.0] * len(group)

    assert "kindless_test" not in reward_names()


def test_self_verify_checks_the_env_before_a_run():
    get_reward("self_verify").check_env(ENV)  # countdown can verify
    sorting = get_env("sorting")  # the example plug-in has no verification prompt
    with pytest.raises(RewardError, match="self_verify.*verification_prompt"):
        get_reward("self_verify").check_env(sorting)
    with pytest.raises(RewardError, match="self_verify"):
        get_reward("0.5*verifier + 0.5*self_verify").check_env(sorting)


def test_bad_rewards_fail_clearly():
    with pytest.raises(RewardError, match="unknown reward 'nope'"):
        get_reward("nope")
    with pytest.raises(RewardError, match="cannot read reward term"):
        get_reward("0.5 verifier")

    @register_reward("wrong_count_test", kind="external")
    def wrong_count(group):
        return [1.0]

    @register_reward("nan_test", kind="external")
    def nan_reward(group):
        return [float("nan")] * len(group)

    with pytest.raises(RewardError, match="returned 1 values for 2"):
        get_reward("wrong_count_test")(group(["1", "2"]))
    with pytest.raises(RewardError, match="non-finite"):
        get_reward("nan_test")(group(["1", "2"]))


def test_tasks_round_trip_through_compact_prompt():
    task = Task.from_dict({"numbers": [9, 9, 9], "target": 729})
    assert ENV.render_prompt(task) == "9 9 9>729:"
    assert ENV.verification_prompt(task, "9 * 9 * 9") == "9 9 9>729:9*9*9?"
    assert ENV.parse_verification("T") is True and ENV.parse_verification("F") is False
    assert ENV.parse_verification("x") is None
    # the organism works out the value first; the verdict is the reply's last character
    assert ENV.parse_verification("=81=729T") is True
    assert ENV.parse_verification("=81=728F") is False
    assert ENV.parse_verification("=81=729") is None


def test_random_is_a_seeded_fair_coin_per_completion():
    from assay.rewards.builtin import RandomReward

    g = group(TEXTS * 40)  # 200 completions
    first, again = RandomReward(seed=3)(g), RandomReward(seed=3)(g)
    assert first == again  # seeded: the same run draws the same coins
    assert set(first) == {0.0, 1.0}
    assert 0.4 < np.mean(first) < 0.6  # a fair coin (200 draws: 4 sigma is ±0.14)
    assert RandomReward(seed=3)(g) != RandomReward(seed=4)(g)
    reward = RandomReward(seed=3)
    assert reward(g) != reward(g)  # each call draws afresh: nothing for the policy to learn


def test_format_is_one_when_an_answer_was_extracted():
    g = group(["<answer>5+1*2</answer>", "", "<answer>9</answer>", "<answer></answer>"])
    assert get_reward("format")(g) == [1.0, 0.0, 1.0, 0.0]
    assert g.answers[3] == ""  # extracted, but blank: an empty block is no answer


def test_self_verify_refuses_a_judge_that_answers_fewer_prompts_than_asked():
    """Replies are matched to answers by position: a short reply list must not silently
    leave the last answers unjudged (found by a mutation run)."""
    with pytest.raises(ValueError):
        get_reward("self_verify")(group(["5+1*2", "2*1+5"], judge=lambda prompts: prompts[:1]))


def test_the_random_control_defaults_to_seed_zero():
    from assay.rewards.builtin import RandomReward

    texts = [str(i) for i in range(16)]
    assert RandomReward().score(group(texts)) == RandomReward(seed=0).score(group(texts))
    assert RandomReward().score(group(texts)) != RandomReward(seed=1).score(group(texts))


# -- incorrect_label: the wrong-signal control ---------------------------------------------


def test_incorrect_label_rewards_the_fixed_wrong_target_only():
    wrong = ENV.wrong_label(TASK)
    assert wrong.fields["target"] == 6 and TASK.fields["target"] == 7  # the task is unchanged
    assert ENV.wrong_label(TASK).fields == wrong.fields  # fixed: the same every time
    values, parts = get_reward("incorrect_label").score_parts(group(["5+1*2", "5+2-1", "5)"]))
    assert values == [0.0, 1.0, 0.0]  # right for the true target earns nothing
    assert parts["incorrect_label_failed"] == [0.0, 0.0, 0.0]


def test_label_offsets_are_nonzero_small_and_spread():
    from assay.envs import label_offset

    tasks = ENV.generate(300, seed=3)
    offsets = [label_offset(t) for t in tasks]
    assert set(offsets) == {-3, -2, -1, 1, 2, 3}
    assert [label_offset(t) for t in tasks] == offsets


def test_math_wrong_labels_for_numbers_fractions_and_expressions():
    math_env = get_env("math")
    for gold, check in ((12, lambda w: isinstance(w, int) and w != 12 and abs(w - 12) <= 3),
                        ("3/4", lambda w: w != "3/4" and "/" in w),
                        ("\\sqrt{2}", lambda w: w.startswith("(\\sqrt{2})"))):
        task = math_env.make_task({"problem": "p", "answer": gold})
        wrong = math_env.wrong_label(task)
        assert check(wrong.fields["answer"]), wrong.fields
        right = str(gold) if not isinstance(gold, str) else gold
        assert math_env.verify(task, f"\\boxed{{{right}}}").correct
        assert not math_env.verify(wrong, f"\\boxed{{{right}}}").correct  # the gold is wrong now
    equation = math_env.make_task({"equation": "x + 1 = 2"})
    g = group(["x = 1"], env=math_env, task=equation)
    with pytest.raises(RewardError, match="incorrect_label.*equation task has no label"):
        get_reward("incorrect_label")(g)


def test_incorrect_label_refuses_an_env_without_wrong_labels():
    with pytest.raises(RewardError, match="incorrect_label.*wrong_label"):
        get_reward("incorrect_label").check_env(get_env("sorting"))


def test_pending_statistics_refuse_every_read_and_answer_python_s_own_probes():
    """The placeholder raises a one-line `RewardError` on any use of the arrays, while the
    attribute probes of Python and numpy (dunder names) get the AttributeError they expect."""
    from assay.rewards import RewardError
    from assay.rewards.base import PENDING

    for read in (lambda: np.mean(PENDING), lambda: len(PENDING), lambda: PENDING[0],
                 lambda: PENDING.sum(), lambda: PENDING + 1, lambda: float(PENDING)):
        with pytest.raises(RewardError, match="without declaring needs"):
            read()
    assert not hasattr(PENDING, "__array_interface__") and repr(PENDING) == "PENDING"


def test_a_function_reward_returning_no_list_is_named():
    from assay.rewards import register_reward
    from assay.rewards import registry as reward_registry

    before = dict(reward_registry._registered)
    try:
        @register_reward("returns_none", kind="external")
        def returns_none(group):
            return None

        with pytest.raises(RewardError, match="reward 'returns_none' returned NoneType"):
            get_reward("returns_none")(group(TEXTS))
    finally:
        reward_registry._registered.clear()
        reward_registry._registered.update(before)


def test_a_weighted_sum_keeps_each_parts_own_parts():
    from assay.rewards.registry import score_group

    alone = score_group(get_reward("incorrect_label"), group(TEXTS))[1]
    summed = score_group(get_reward("0.5*verifier + 0.5*incorrect_label"), group(TEXTS))[1]
    assert "incorrect_label_failed" in alone
    assert summed["incorrect_label_failed"] == alone["incorrect_label_failed"]
    assert set(summed) == {"verifier", "incorrect_label", "incorrect_label_failed"}


@pytest.mark.parametrize("name, said", [
    ("bad-name", "cannot be used in a reward spec"),
    ("2fast", "cannot be used in a reward spec"),
    ("verifier", "'verifier' is built in"),
])
def test_a_reward_name_a_spec_cannot_say_or_a_built_in_one_is_refused(name, said):
    with pytest.raises(RewardError, match=said):
        register_reward(name, kind="external")(lambda group: [0.0] * len(group))
    assert get_reward("verifier").kind == "external"  # the built-in stands


def test_a_class_registered_under_another_name_goes_by_that_name():
    from assay.rewards import registry as reward_registry
    from assay.rewards.base import Reward

    class Real(Reward):
        name = "real_name_test"
        kind = "external"

        def score(self, group):
            return [1.0] * len(group)

    before = dict(reward_registry._registered)
    try:
        register_reward("alias_test")(Real)
        reward = get_reward("alias_test")
        assert reward.name == "alias_test" and Real.name == "real_name_test"
        assert list(reward.score_parts(group(TEXTS))[1]) == ["alias_test"]
    finally:
        reward_registry._registered.clear()
        reward_registry._registered.update(before)


@pytest.mark.parametrize("spec, said", [
    (None, "expected a name, `w*name + ...`, a Reward or (weight, reward) pairs, got None"),
    (3, "got 3"),
    (["verifier"], "expected (weight, reward) pairs, got 'verifier'"),
    ([("x", "verifier")], "expected (weight, reward) pairs"),
    ([(float("nan"), "verifier")], "reward 'verifier': its weight is nan, not a finite number"),
    ([], "got []"),
    ("1e999*verifier", "reward 'verifier': its weight is inf, not a finite number"),
])
def test_a_reward_spec_of_the_wrong_kind_is_a_reward_error(spec, said):
    with pytest.raises(RewardError) as err:
        get_reward(spec)
    assert said in str(err.value), err.value
