"""The math verifier: answer extraction, equivalence beyond math-verify, hedging, equations."""

from __future__ import annotations

import pytest

from assay.verifiers.equation import EquationError, check_equation
from assay.verifiers.latex_answer import (
    MAX_ANSWER_CHARS,
    boxed_contents,
    clean_answer,
    final_answers,
)
from assay.verifiers.math import answer_key, check_math, magnitude_bits, parse_answer

# -- extraction ------------------------------------------------------------------------


def test_the_last_box_is_the_answer_and_nested_braces_are_kept():
    text = r"First \boxed{1}, then \boxed{\frac{1}{2}} and finally \boxed{\{1, 2\}}."
    assert final_answers(text) == ["1", r"\frac{1}{2}", r"\{1, 2\}"]


def test_answer_tags_count_and_a_box_inside_a_tag_counts_once():
    assert final_answers("<think>...</think><answer> 42 </answer>") == ["42"]
    assert final_answers(r"<answer>The value is \boxed{7}</answer>") == ["7"]
    assert final_answers(r"\boxed{3} <answer>5</answer>") == ["3", "5"]


def test_no_box_and_no_tag_means_no_answer_not_the_last_number():
    assert final_answers("So the answer is 42.") == []
    assert check_math([], "42").status == "invalid"


def test_an_unclosed_box_is_skipped_and_a_box_in_a_box_counts_once():
    assert final_answers(r"\boxed{2} and then \boxed{3") == ["2"]
    assert boxed_contents(r"\boxed{\boxed{5}}") == [(0, r"\boxed{5}")]
    assert clean_answer(r"\boxed{5}") == "5"
    assert final_answers(r"\boxed{ \boxed{5} and \boxed{6}") == ["5", "6"]


def test_extraction_of_hostile_text_finishes_and_finds_what_is_there():
    assert final_answers("\\boxed{" * 100_000) == []
    assert len(final_answers("\\boxed{1}" * 20_000)) == 20_000
    assert final_answers("<answer>" * 100_000) == []


# -- equivalence -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, gold",
    [
        (r"\frac{1}{2}", "0.5"),
        (r"\dfrac12", r"\frac{2}{4}"),
        ("x = 4", "4"),
        (r"\sqrt{50}", r"5\sqrt{2}"),
        (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}"),
        ("0.333333", r"\frac13"),
        ("3.14159265", r"\pi"),
        (r"1-\frac{1}{e}", r"1-\frac{1}{\mathrm{e}}"),
        (r"1-\frac{1}{\mathrm{e}}", r"1-e^{-1}"),
        (r"2\mathrm{e}", r"2e"),
        (r"\frac{2005}{2005!}", r"\frac{1}{2004!}"),
        ("2, 1", r"\{1, 2\}"),
        (r"\pm 3", r"\{-3, 3\}"),
        ("(0, 1]", "(0,1]"),
        (r"x \in [-1, 3]", "[-1, 3]"),
        ("x^2 + 2x + 1", "(x+1)^2"),
        (r"\text{Monday}", r"\text{Monday}"),
        (r"$\frac{3}{4}$", "0.75"),
    ],
)
def test_equivalent_answers_are_correct(answer, gold):
    verdict = check_math([answer], gold)
    assert verdict.status == "correct", verdict


@pytest.mark.parametrize(
    "answer, gold, why",
    [
        (
            r"\frac{1}{2006!}",
            r"\frac{1}{2004!}",
            "tiny values that differ (math-verify rounds to 0)",
        ),
        ("0.0", r"\frac{1}{2004!}", "a decimal zero against a tiny exact value"),
        ("e^{-1000}", "e^{-1001}", "tiny closed forms that differ"),
        (r"1+\frac{1}{\mathrm{e}}", r"1-\frac{1}{\mathrm{e}}", "extraction stopped at \\mathrm{e}"),
        (r"2\mathrm{e}", "2", "\\mathrm{e} was dropped"),
        ("x^2 - 9 = 0", "x^2 - 4 = 0", "plain-text equations collapsed to 0"),
        ("x^2 = 4", "4", "an equation is not a value"),
        ("0.33", r"\frac13", "not enough digits"),
        ("0.000123", "0.0001234", "decimal differs by 0.3%"),
        ("(0, 1)", "(0,1]", "open vs half-open interval"),
        ("3", r"\{-3, 3\}", "half of a set"),
        ("1, 2, 3", r"\{1, 2\}", "a set with an extra member"),
        (r"2 \text{ or } 3", "2", "a set against a single value"),
        (r"10^{10^{10}}", "4", "a tower, compared without evaluating it"),
    ],
)
def test_different_answers_are_incorrect(answer, gold, why):
    verdict = check_math([answer], gold)
    assert verdict.status == "incorrect", (why, verdict)


def test_an_unparsable_answer_is_compared_by_its_whole_text_not_a_fragment():
    assert parse_answer(r"\frac{1}{\mathrm{q}") is None
    assert check_math([r"\frac{1}{\mathrm{q}"], r"\frac{1}{\mathrm{q}").correct
    verdict = check_math([r"\frac{1}{\mathrm{q}"], r"\frac{1}{\mathrm{r}")
    assert verdict.status == "incorrect" and "compared as text" in verdict.detail


# -- hedging and sets --------------------------------------------------------------------


def test_several_different_boxed_answers_against_a_single_gold_are_hedging():
    verdict = check_math(["2", "3"], "2")
    assert verdict.status == "incorrect" and "hedging" in verdict.detail
    many = [str(i) for i in range(100)] + ["2"]
    assert check_math(many, "2").status == "incorrect"


def test_repeating_the_same_answer_in_other_words_is_not_hedging():
    assert check_math(["2", "2.0", r"\frac{4}{2}", "x = 2"], "2").correct


def test_a_set_gold_pools_the_answers_as_a_set():
    assert check_math(["1", "2"], r"\{1, 2\}").correct
    assert check_math(["2", r"\{1, 2\}"], r"\{1, 2\}").correct
    assert check_math(["1", "2", "3"], r"\{1, 2\}").status == "incorrect"
    assert check_math(["1"], r"\{1, 2\}").status == "incorrect"


def test_the_last_answer_decides_only_when_all_agree():
    assert check_math(["4", "5"], "5").status == "incorrect"  # hedged, although the last is right


# -- forms and refusals --------------------------------------------------------------


def test_form_number_rejects_the_unevaluated_question():
    gold = r"\frac{19}{12}"
    assert check_math([r"\frac{19}{12}"], gold, form="number").correct
    assert check_math(["19/12"], gold, form="number").correct
    copied = check_math([r"\frac{3}{4}+\frac{5}{6}"], gold, form="number")
    assert copied.status == "incorrect" and "single number" in copied.detail


def test_form_expanded_rejects_products_and_powers_of_sums():
    gold = "x^2 - x - 6"
    assert check_math(["x^2 - x - 6"], gold, form="expanded").correct
    assert check_math(["-6 - x + x^2"], gold, form="expanded").correct
    for unexpanded in ["(x+2)(x-3)", "(x - 3)(x + 2)"]:
        verdict = check_math([unexpanded], gold, form="expanded")
        assert verdict.status == "incorrect" and "not expanded" in verdict.detail
    assert "power of a sum" in check_math(["(x+1)^2"], "x^2+2x+1", form="expanded").detail


def test_answers_too_long_or_too_deep_are_refused_before_parsing():
    assert check_math(["1" * (MAX_ANSWER_CHARS + 1)], "1").status == "invalid"
    deep = "(" * 40 + "1" + ")" * 40
    verdict = check_math([deep], "1")
    assert verdict.status == "invalid" and "nested deeper" in verdict.detail


def test_towers_are_sized_without_being_evaluated():
    assert magnitude_bits(parse_answer(r"10^{10^{10}}")) == float("inf")
    assert magnitude_bits(parse_answer(r"2^{100}")) < 1000
    assert check_math([r"10^{10^{10}}"], r"10^{10^{10}}").correct
    assert check_math([r"2^{2^{2^{2^{2^{2}}}}}"], "2").status == "incorrect"


def test_answer_keys_agree_for_equivalent_answers_and_differ_otherwise():
    assert answer_key("0.5") == answer_key(r"\frac{1}{2}") == answer_key("x = 1/2")
    assert answer_key(r"\{1, 2\}") == answer_key("2, 1")
    assert answer_key(r"\frac{\sqrt2}{2}") == answer_key(r"\frac{1}{\sqrt{2}}")
    assert answer_key("(x+1)^2") == answer_key("x^2 + 2x + 1")
    assert answer_key("0.5") != answer_key("0.25")
    assert answer_key(r"\frac{1}{2004!}") != answer_key(r"\frac{1}{2006!}")
    assert answer_key(r"\frac{1}{\mathrm{q}") == ("text", r"\frac{1}{\mathrm{q}")


# -- equations (label-free) ------------------------------------------------------------


@pytest.mark.parametrize(
    "answers, equation",
    [
        (["4"], "2x + 3 = 11"),
        (["x = 4"], "2x + 3 = 11"),
        (["2, 3"], "x^2 - 5x + 6 = 0"),
        (["3", "2"], "x^2 - 5x + 6 = 0"),
        (["x = 2 \\text{ or } x = 3"], "x^2 - 5x + 6 = 0"),
        (["0.5, 3"], "2x^2 - 7x + 3 = 0"),
        (["1"], "x^2 - 2x + 1 = 0"),
        ([r"\pm\sqrt{2}"], "x^2 = 2"),
        ([r"x = \pm 3"], "x^2 = 9"),
        ([r"\emptyset"], "x^2 + 1 = 0"),
        ([r"\varnothing"], "x^2 + 1 = 0"),
        (["\\pi"], "\\sin(x) = 0"),
    ],
)
def test_answers_that_satisfy_the_equation_are_correct(answers, equation):
    verdict = check_equation(answers, equation, "x")
    assert verdict.status == "correct", verdict


@pytest.mark.parametrize(
    "answers, equation, why",
    [
        (["5"], "2x + 3 = 11", "does not satisfy"),
        (["2"], "x^2 - 5x + 6 = 0", "gives 1 of the 2 solutions"),
        (["2", "3", "4"], "x^2 - 5x + 6 = 0", "does not satisfy"),
        (["1.414, -1.414"], "x^2 = 2", "does not satisfy"),
        (["y = 4"], "2x + 3 = 11", "does not give a value of x"),
        (["x + 1"], "2x + 3 = 11", "not a number"),
        ([r"\emptyset"], "x^2 - 1 = 0", "gives 0 of the 2 solutions"),
        (["2i, -2i"], "x^2 + 4 = 0", "not a number"),
    ],
)
def test_answers_that_do_not_solve_the_equation_are_incorrect(answers, equation, why):
    verdict = check_equation(answers, equation, "x")
    assert verdict.status == "incorrect" and why in verdict.detail, verdict


def test_complex_domain_reads_i_as_the_imaginary_unit():
    assert check_equation(["2i, -2i"], "z^2 + 4 = 0", "z", domain="complex").correct
    assert check_equation([r"z = \pm 2\mathrm{i}"], "z^2 + 4 = 0", "z", domain="complex").correct
    assert check_equation(["2i"], "z^2 + 4 = 0", "z", domain="complex").status == "incorrect"


def test_a_bad_equation_is_a_task_error_not_a_wrong_answer():
    with pytest.raises(EquationError, match="does not contain the variable"):
        check_equation(["1"], "y + 1 = 2", "x")
    with pytest.raises(EquationError, match="besides"):
        check_equation(["1"], "x + y = 2", "x")
    with pytest.raises(EquationError, match="one equation"):
        check_equation(["1"], "x + 1", "x")


def test_equation_answers_are_refused_or_invalid_like_gold_answers():
    assert check_equation([], "x = 1", "x").status == "invalid"
    assert check_equation(["(" * 40 + "1" + ")" * 40], "x = 1", "x").status == "invalid"
