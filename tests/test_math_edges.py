"""Math verifier edges found by a mutation run (docs/development.md): 0^{-1}, near-equal
answer keys, the form of an unparsable answer, 0! and an empty box; and by `assay audit`:
the question copied back as its own answer."""

from __future__ import annotations

import pytest

from assay.envs import get_env
from assay.verifiers.math import answer_key, check_math, exact_rational, parse_answer


def test_zero_to_a_negative_power_is_an_answer_not_a_crash():
    assert exact_rational(parse_answer("0^{-1}")) is None  # the guard: no ZeroDivisionError
    assert check_math(["0^{-1}"], "1").status == "incorrect"
    assert check_math(["0^{-1}"], "0^{-1}").correct
    assert answer_key("0^{-1}") != answer_key("0") and answer_key("0^{-1}") != answer_key("1")


def test_answer_keys_keep_near_equal_exact_values_apart():
    assert answer_key("2^{100}") != answer_key("2^{100} + 1")
    assert answer_key("2^{100} + 1") != answer_key("2^{100} + 2")
    assert answer_key("30! + 1") != answer_key("30! + 2")
    assert answer_key(r"\frac{1}{3}") != answer_key("0.333333333333")
    assert answer_key(r"\frac{1}{2004!}") != answer_key(r"\frac{1}{2006!}")
    assert answer_key("2^{100}") == answer_key("1267650600228229401496703205376")


def test_the_form_of_an_unparsable_answer_cannot_be_checked():
    text = r"\frac{1}{\mathrm{q}"
    assert check_math([text], text).correct  # equal as text
    verdict = check_math([text], text, form="number")
    assert verdict.status == "incorrect" and "could not parse" in verdict.detail, verdict


def test_zero_factorial_is_one():
    assert exact_rational(parse_answer("0!")) == 1
    assert answer_key("0!") == answer_key("1")
    verdict = check_math(["0!"], "1")
    assert verdict.correct and "exact rationals" in verdict.detail


def test_an_empty_box_is_invalid_not_incorrect():
    env = get_env("math")
    task = env.make_task({"question": "1 + 0?", "answer": "1"})
    for text in (r"so \boxed{}", r"so \boxed{ }", r"<answer></answer>"):
        verdict = env.check_completion(task, text)
        assert verdict.status == "invalid", (text, verdict)
    assert check_math([""], "1").status == "invalid"
    assert check_math(["  "], "1").status == "invalid"


def test_zero_to_the_zero_is_one_exactly():
    assert exact_rational(parse_answer("0^{0}")) == 1
    assert answer_key("0^{0}") == answer_key("1")


def test_sixteen_answers_pool_into_a_set_and_seventeen_are_hedging():
    gold = r"\{" + ",".join(str(i) for i in range(1, 17)) + r"\}"
    assert check_math([str(i) for i in range(1, 17)], gold).correct
    verdict = check_math([str(i) for i in range(1, 18)], gold)
    assert verdict.status == "incorrect" and "hedging: 17 different answers" in verdict.detail


def test_set_answers_key_by_their_members_in_any_order():
    assert answer_key(r"\{1, 2\}") == answer_key(r"\{2, 1\}")
    assert answer_key(r"\{1, 2\}") != answer_key(r"\{1, 3\}")
    assert answer_key(r"\{1, 2\}") != answer_key("1")
    assert answer_key(r"\{2^{2}, 1\}") == answer_key(r"\{4, 1\}")  # members key by value


@pytest.mark.parametrize(
    "answer, left",
    [
        (r"\int_0^1 e^{-x}\,dx", r"\int"),  # tasks/math.example.jsonl's `upright-e`, copied back
        (r"1 - \int_0^1 x e^{-x}\,dx - \frac{1}{e} + \frac{1}{e}", r"\int"),
        (r"\lim_{n\to\infty} \left(1 - \frac{1}{\mathrm{e}}\right)", r"\lim"),
        (r"\sum_{k=0}^{0} \left(1 - \frac{1}{\mathrm{e}}\right)", r"\sum"),
    ],
)
def test_an_unevaluated_question_is_no_answer(answer, left):
    """Equal in value, but it poses the question instead of answering it (issue 14's audit)."""
    verdict = check_math([answer], r"1 - \frac{1}{\mathrm{e}}")
    assert verdict.status in ("incorrect", "invalid") and verdict.score == 0.0, verdict
    if verdict.status == "incorrect" and "unevaluated" in verdict.detail:
        assert left in verdict.detail
    assert check_math([r"1 - \frac{1}{\mathrm{e}}"], r"1 - \frac{1}{\mathrm{e}}").correct


def test_a_gold_answer_with_an_integral_allows_one():
    assert check_math([r"\int_0^1 f(x)\,dx"], r"\int_0^1 f(x)\,dx").correct


def test_interval_and_inequality_answers_key_by_what_they_say():
    """Majority vote must not lump different intervals or inequalities together (a key of
    None for every non-expression value would make them all agree)."""
    assert answer_key("[1, 2)") == answer_key(r"\left[1, 2\right)")
    assert answer_key("[1, 2)") != answer_key("[1, 3)")
    assert answer_key("[1, 2)") != answer_key("(1, 2)")
    assert answer_key("x < 3") != answer_key("x < 4")


def test_a_huge_fraction_counts_its_bits():
    import sympy

    from assay.verifiers.math import magnitude_bits

    assert magnitude_bits(sympy.Rational(1, 2**5000 + 1)) >= 5000
    assert magnitude_bits(sympy.Rational(2**3000 + 1, 3)) >= 3000


def test_an_expression_too_deep_to_measure_is_too_large(monkeypatch):
    import sympy

    from assay.verifiers import exact_value

    def deep(expr):
        raise RecursionError

    monkeypatch.setattr(exact_value, "magnitude_bits", deep)
    assert exact_value.too_large(sympy.Integer(1)) is True
