"""Property-based tests: the countdown verifier agrees with exact arithmetic on every input."""

from __future__ import annotations

import random
import time
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assay.envs.countdown import CountdownEnv, solve
from assay.verifiers.countdown import check_countdown

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference_value(expr: str) -> Fraction | None:
    """Trusted evaluation of a test-generated expression (never model text): integers become
    Fractions so that / is exact."""
    import re

    code = re.sub(r"(\d+)", r"Fraction(\1)", expr)
    try:
        return eval(code, {"Fraction": Fraction, "__builtins__": {}})  # noqa: S307
    except ZeroDivisionError:
        return None


@SETTINGS
@given(seed=st.integers(0, 10**9), count=st.integers(3, 6))
def test_every_constructed_solution_is_accepted(seed, count):
    env = CountdownEnv(min_numbers=count, max_numbers=count, max_target=10**6)
    (task,) = env.generate(1, seed=seed)
    v = check_countdown(task["solution"], task["numbers"], task["target"])
    assert v.status == "correct", (task.to_dict(), v)


@SETTINGS
@given(
    numbers=st.lists(st.integers(1, 13), min_size=2, max_size=4),
    target=st.integers(-50, 200),
)
def test_solver_answers_verify_and_no_answer_means_unsolvable(numbers, target):
    expr = solve(numbers, target)
    if expr is not None:
        assert check_countdown(expr, numbers, target).status == "correct"


def mutate(expr: str, rng: random.Random) -> str:
    """One random edit: change a digit, an operator, drop or duplicate a number."""
    kind = rng.choice(["digit", "op", "drop", "dup"])
    positions = {
        "digit": [i for i, c in enumerate(expr) if c.isdigit()],
        "op": [i for i, c in enumerate(expr) if c in "+-*/"],
    }
    if kind in positions and positions[kind]:
        i = rng.choice(positions[kind])
        pool = "0123456789" if kind == "digit" else "+-*/"
        return expr[:i] + rng.choice(pool.replace(expr[i], "")) + expr[i + 1 :]
    if kind == "drop":
        return expr.rsplit(" ", 2)[0] if expr.count(" ") >= 2 else expr + " + 1"
    return f"{expr} + {expr}"


@SETTINGS
@given(seed=st.integers(0, 10**9), mutation_seed=st.integers(0, 10**9))
def test_a_mutated_solution_is_accepted_exactly_when_arithmetic_says_so(seed, mutation_seed):
    env = CountdownEnv(min_numbers=3, max_numbers=5, max_target=10**6)
    (task,) = env.generate(1, seed=seed)
    numbers, target = task["numbers"], task["target"]
    mutant = mutate(task["solution"], random.Random(mutation_seed))
    v = check_countdown(mutant, numbers, target)
    import ast
    from collections import Counter

    try:
        tree = ast.parse(mutant, mode="eval")
        used = Counter(n.value for n in ast.walk(tree) if isinstance(n, ast.Constant))
    except SyntaxError:
        assert v.status == "invalid"
        return
    truly_correct = used == Counter(numbers) and reference_value(mutant) == target
    assert v.correct == truly_correct, (task.to_dict(), mutant, v)


@SETTINGS
@given(text=st.text(alphabet="0123456789+-*/() x.=e_[]", max_size=3000))
def test_any_text_gets_a_verdict_quickly_and_is_never_correct_unless_exact(text):
    start = time.perf_counter()
    v = check_countdown(text, [1, 2, 3], 6)
    assert time.perf_counter() - start < 0.2
    assert v.status in ("correct", "incorrect", "invalid")
    if v.correct:
        assert reference_value(text) == 6
