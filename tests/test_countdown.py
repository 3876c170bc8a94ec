"""The countdown verifier, generator and solver."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest

from assay import Verdict, get_env
from assay.envs.countdown import CountdownEnv, extract_answer_tag, solve
from assay.verifiers.countdown import MAX_DEPTH, check_countdown, evaluate, parse_expression


def answer(text: str) -> str:
    return f"<think>let me see</think> <answer>{text}</answer>"


@pytest.fixture(scope="module")
def env() -> CountdownEnv:
    return CountdownEnv()


def verdict(env: CountdownEnv, numbers: list[int], target: int, text: str) -> Verdict:
    task = env.make_task({"numbers": numbers, "target": target})
    return env.verify(task, answer(text))


@pytest.mark.parametrize(
    "numbers,target,text",
    [
        ([1, 2, 3], 7, "1 + 2 * 3"),
        ([1, 2, 3], 9, "(1 + 2) * 3"),
        ([4, 4, 4, 4], 17, "4 * 4 + 4 / 4"),
        ([3, 3, 8, 8], 24, "8 / (3 - 8 / 3)"),  # needs exact rationals: 8/3 is not an int
        ([5, 2], -3, "2 - 5"),
        ([5, 2], 3, "-(2 - 5)"),  # unary minus is allowed
        ([7, 7], 0, "7-7"),
        ([10, 5, 5], 0, "10 - 5 - 5"),
    ],
)
def test_correct_expressions(env, numbers, target, text):
    v = verdict(env, numbers, target, text)
    assert v.status == "correct", v
    assert v.score == 1.0


@pytest.mark.parametrize(
    "numbers,target,text,reason",
    [
        ([1, 2, 3], 8, "1 + 2 * 3", "not 8"),
        ([1, 2, 3], 6, "2 * 3", "does not use [1]"),
        ([2, 3], 9, "3 * 3", "uses [3]"),
        ([2, 2, 3], 7, "2 + 2 + 3 + 2", "uses [2]"),  # duplicates are a multiset
        ([2, 2, 3], 7, "2 + 3 + 2", ""),  # ... and both 2s may be used
        ([5, 0], 1, "5 / 0", "division by zero"),
    ],
)
def test_wrong_expressions_are_incorrect(env, numbers, target, text, reason):
    v = verdict(env, numbers, target, text)
    if reason == "":
        assert v.status == "correct"
        return
    assert v.status == "incorrect", v
    assert reason in v.detail
    assert v.score == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "9**9**9",
        "2 ** 3",
        "__import__('os').system('true')",
        "().__class__.__bases__[0].__subclasses__()",
        "x + 1",
        "abs(-3)",
        "1.5 * 2",
        "1e3",
        "0x10",
        "1 + 2 = 3",
        "1 // 2",
        "7 % 2",
        "+3",
        "~3",
        "[1, 2]",
        "1; 2",
        "1_000",
        "",
        "(((1)",
        "1 << 2",
        "True + 1",
        "lambda: 1",
    ],
)
def test_hostile_and_foreign_syntax_is_invalid_without_evaluation(env, text):
    start = time.perf_counter()
    v = verdict(env, [1, 2, 3, 9], 6, text)
    assert v.status == "invalid", (text, v)
    assert v.score == 0.0
    assert time.perf_counter() - start < 0.5


def test_format_score_rewards_well_formed_wrong_answers_only():
    env = CountdownEnv(format_score=0.1)
    task = env.make_task({"numbers": [1, 2], "target": 5})
    assert env.verify(task, answer("1 + 2")).score == 0.1
    assert env.verify(task, answer("1 ** 2")).score == 0.0
    assert env.verify(task, "no tags at all").score == 0.0


def test_extraction_takes_the_last_answer_tag():
    assert extract_answer_tag("<answer>1</answer> then <answer>2+3</answer>") == "2+3"
    assert extract_answer_tag("<answer> 4 </answer> <answer>unclosed") == "4"
    assert extract_answer_tag("no answer here") is None
    assert extract_answer_tag("</answer> backwards <answer>") is None


def test_missing_answer_is_invalid(env):
    task = env.make_task({"numbers": [1, 2], "target": 3})
    v = env.verify(task, "1 + 2 = 3, the answer is 3")
    assert v.status == "invalid" and "no answer" in v.detail


@pytest.mark.parametrize(
    "text",
    [
        "(" * 5000 + "1" + ")" * 5000,
        "-" * 900 + "1",
        "+".join(["1"] * 400_000),  # a megabyte sum
        "1" * 1_000_000,
        "(" * 100 + "1+2" + ")" * 100,
    ],
)
def test_pathological_answers_are_bounded(env, text):
    start = time.perf_counter()
    v = verdict(env, [1, 2], 3, text)
    assert v.status == "invalid", v
    assert time.perf_counter() - start < 0.5


def test_nesting_up_to_the_limit_is_fine():
    ok = "(" * (MAX_DEPTH - 2) + "1 + 2" + ")" * (MAX_DEPTH - 2)
    assert check_countdown(ok, [1, 2], 3).status == "correct"
    assert isinstance(parse_expression("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1)), str)


def test_megabyte_completion_is_fast(env):
    task = env.make_task({"numbers": [1, 2], "target": 3})
    completion = "x" * 1_000_000 + answer("1 + 2") + "y" * 1_000_000
    start = time.perf_counter()
    assert env.verify(task, completion).status == "correct"
    assert time.perf_counter() - start < 0.5


def test_generator_is_seeded_and_in_range():
    env = CountdownEnv(min_numbers=3, max_numbers=6, min_target=10, max_target=500)
    a, b = env.generate(50, seed=7), env.generate(50, seed=7)
    assert [t.to_dict() for t in a] == [t.to_dict() for t in b]
    assert [t.to_dict() for t in a] != [t.to_dict() for t in env.generate(50, seed=8)]
    for task in a:
        assert 3 <= len(task["numbers"]) <= 6
        assert 10 <= task["target"] <= 500
        assert all(1 <= n <= 100 for n in task["numbers"])
        assert str(task["target"]) in task.prompt and "<answer>" in task.prompt


def test_generated_tasks_are_solvable_and_their_solutions_verify():
    env = CountdownEnv(max_numbers=5)
    for task in env.generate(200, seed=1):
        assert env.verify(task, answer(task["solution"])).status == "correct", task
    for task in env.generate(20, seed=2):
        found = solve(task["numbers"], task["target"])
        assert found is not None
        assert check_countdown(found, task["numbers"], task["target"]).status == "correct"


def test_perturbed_targets_are_never_correct():
    env = CountdownEnv()
    for task in env.generate(200, seed=3):
        wrong = env.make_task({"numbers": task["numbers"], "target": task["target"] + 1})
        assert env.verify(wrong, answer(task["solution"])).status == "incorrect"


def test_solver_finds_rational_solutions_and_reports_impossible():
    assert solve([3, 3, 8, 8], 24) is not None
    assert solve([1, 1], 5) is None
    assert solve([5] * 6, 1007) is None
    expr = solve([1, 3, 4, 6], 24)
    assert check_countdown(expr, [1, 3, 4, 6], 24).status == "correct"


def test_impossible_generator_ranges_name_the_options():
    env = CountdownEnv(min_numbers=2, max_numbers=2, max_value=1, min_target=50, max_target=60)
    with pytest.raises(ValueError, match="widen the ranges"):
        env.generate(1)


def test_options_are_validated():
    with pytest.raises(ValueError, match="min_numbers"):
        CountdownEnv(min_numbers=5, max_numbers=3)
    env = get_env("countdown", max_numbers="6", format_score="0.1")
    assert env.options.max_numbers == 6 and env.options.format_score == 0.1


def test_value_of_answers():
    env = CountdownEnv()
    assert env.value_of("8 / 3") == Fraction(8, 3)
    assert env.value_of("1 / 0") is None
    assert env.value_of("a") is None


def test_evaluate_can_record_each_operation_in_order():
    steps: list = []
    assert evaluate(parse_expression("5+1*2"), steps) == 7 and steps == [2, 7]
    steps = []
    assert evaluate(parse_expression("-(9-3)/4"), steps) == Fraction(-3, 2)
    assert steps == [6, Fraction(-3, 2)]  # unary minus is not a step
    with pytest.raises(ZeroDivisionError):
        evaluate(parse_expression("5/(1-1)"), [])
