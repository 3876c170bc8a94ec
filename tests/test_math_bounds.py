"""The math verifier's bounds and fallbacks, found by the full mutation run of
assay/verifiers/math.py (docs/development.md): the size bound that keeps huge numbers
from being evaluated, the two numeric tolerances at their edges, text fallbacks and their
notes, vote keys of expressions and matrices, and the warm-up that forked workers rely on."""

from __future__ import annotations

import subprocess
import sys
import tempfile

import sympy

from assay.verifiers.math import (
    _WARM_UP_ANSWERS,
    MAX_EXACT_BITS,
    Answer,
    _disagree_numerically,
    answer_key,
    check_math,
    distinct_texts,
    magnitude_bits,
    parse_answer,
    too_large,
)

x, y = sympy.symbols("x y")
MATRIX = r"\begin{pmatrix}1\\2\end{pmatrix}"


# -- the size bound -------------------------------------------------------------------


def test_the_size_bound_follows_its_rules():
    """Integers count their bits, a product adds its factors', a sum carries one bit,
    a power scales its base by 2**(bits of the exponent)."""
    assert magnitude_bits(sympy.Integer(1024)) == 11.0
    assert magnitude_bits(sympy.Integer(0)) == magnitude_bits(sympy.Integer(1)) == 1.0  # at least 1
    assert magnitude_bits(sympy.Integer(1024) * x * y) == 13.0  # 11 + 1 + 1, not max + 1
    assert magnitude_bits(sympy.Integer(1024) + x) == 12.0
    assert magnitude_bits(x**50) == 64.0  # 50 has 6 bits: 1 * 2**6
    assert magnitude_bits(x ** (2**39)) == 2.0**40  # an exponent of exactly 40 bits is finite
    assert magnitude_bits(x ** (2**40)) == float("inf")


def test_the_size_limit_sits_exactly_at_max_exact_bits():
    assert MAX_EXACT_BITS == 2**22
    assert too_large(x ** (2**21)) is False  # 1 * 2**22 bits: at the limit
    assert too_large(x ** (2**22)) is True  # 2**23 bits: over it


def test_a_huge_factorial_is_too_large_to_evaluate():
    """(2^30)! would take hours to evaluate; (2^2000)! would overflow a float while
    sizing it. Both must be called too large and compared by structure, at once."""
    for text in ("(2^{30})!", "(2^{2000})!"):
        value = parse_answer(text)
        assert isinstance(value, sympy.factorial), text
        assert too_large(value) is True, text
    verdict = check_math(["(2^{2000})!"], "(2^{2000})!")
    assert verdict.correct and "compared by structure" in verdict.detail
    assert magnitude_bits(sympy.factorial(x)) == 2.0  # n = 2: 2 * max(1, log2 2)
    assert magnitude_bits(sympy.factorial(x**3)) == 64.0  # x**3 sized 4 bits: n = 16, 16 * log2 16
    assert (
        magnitude_bits(sympy.factorial(x * 2**38)) == 2.0**40 * 40
    )  # an argument of 40 bits: finite
    assert magnitude_bits(sympy.factorial(x * 2**39)) == float("inf")


def test_a_matrix_answer_is_sized_keyed_and_checked():
    value = parse_answer(MATRIX)
    assert not isinstance(value, sympy.Basic)  # a mutable matrix: not a sympy Basic
    assert magnitude_bits(value) == 1.0 and too_large(value) is False
    assert check_math([MATRIX], MATRIX).correct
    assert answer_key(MATRIX) == answer_key(MATRIX)
    assert answer_key(MATRIX) != answer_key(r"\begin{pmatrix}1\\3\end{pmatrix}")
    half = r"\begin{pmatrix}0.5\\2\end{pmatrix}"
    assert answer_key(half) == answer_key(r"\begin{pmatrix}\frac{1}{2}\\2\end{pmatrix}")


# -- numeric tolerances -------------------------------------------------------------


def test_a_decimal_must_agree_to_one_part_in_ten_thousand():
    """math-verify calls 0.001 and 0.00100015 equal (it rounds); 1.5e-4 apart is too far."""
    assert check_math(["0.00100005"], "0.001").correct  # 5e-5 apart
    verdict = check_math(["0.00100015"], "0.001")  # 1.5e-4 apart
    assert verdict.status == "incorrect" and "high precision" in verdict.detail


def test_exact_closed_forms_must_agree_to_one_part_in_1e20():
    assert check_math([r"\sqrt{2}+10^{-20}"], r"\sqrt{2}").correct  # 0.7e-20 apart, relative
    verdict = check_math([r"\sqrt{2}+\frac{3}{2\cdot 10^{20}}"], r"\sqrt{2}")  # 1.06e-20 apart
    assert verdict.status == "incorrect" and "high precision" in verdict.detail


def test_a_zero_gold_leaves_the_call_to_math_verify():
    """Relative disagreement is meaningless against 0: any nonzero value is 'far'."""
    assert _disagree_numerically(sympy.Integer(0), sympy.Float("1e-7")) is False
    assert _disagree_numerically(sympy.Integer(1), sympy.Float("1.001")) is True
    assert _disagree_numerically(sympy.oo, sympy.oo) is False  # not finite: math-verify's call


# -- text fallbacks and their notes ---------------------------------------------------


def test_no_answer_at_all_says_so():
    verdict = check_math([], "1")
    assert verdict.status == "invalid" and "no \\boxed{}" in verdict.detail


def test_an_unreadable_gold_answer_is_an_error_not_a_grade():
    gold = "(" * 200 + "1" + ")" * 200  # nested too deep to parse
    verdict = check_math(["1"], gold)
    assert verdict.status == "error" and verdict.detail.startswith("gold answer:"), verdict


def test_an_unparsable_answer_is_compared_as_text_and_says_so():
    verdict = check_math(["1"], r"\frac{1}{\mathrm{q}")
    assert verdict.status == "incorrect" and "compared as text" in verdict.detail, verdict
    assert r"could not parse '\\frac{1}{\\mathrm{q}'" in verdict.detail  # names the unreadable one


def test_an_unparsable_member_of_a_set_answer_is_named():
    verdict = check_math(["1", r"\frac{1}{\mathrm{q}"], r"\{1, 2\}")
    assert verdict.status == "incorrect"
    assert verdict.detail == "could not parse every answer of a set"


def test_repeated_answers_keep_their_last_position():
    assert distinct_texts(["1", "2", " 1"]) == ["2", " 1"]


def test_closed_forms_key_by_their_value():
    assert answer_key(r"\ln 4") == answer_key(r"2\ln 2")
    assert answer_key(r"\ln 4") != answer_key(r"\ln 5")


def test_expressions_key_by_their_expanded_form():
    assert answer_key("(x+1)^2") == answer_key("x^2+2x+1")
    assert answer_key("x+1") != answer_key("x+2")


# -- the process ------------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess:
    # Run outside the checkout: `python -c` puts its working directory first on sys.path,
    # which would hide a PYTHONPATH copy of the package (scripts/mutate.py tests one).
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir()
    )


def test_checking_an_answer_prints_nothing():
    """math-verify warns once per process when its own timeout is off; ours is a worker
    process, so the warning would only be noise in every worker's log."""
    # a closed form, not an exact rational: through math-verify's parser and its grader
    done = _python(
        "from assay.verifiers.math import check_math\n"
        r"print(check_math([r'\frac{\sqrt{2}}{2}'], r'\frac{1}{\sqrt{2}}').status)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "correct" and done.stderr == ""


def test_warm_up_parses_the_typical_answers_once_per_process():
    done = _python(
        "from assay.verifiers import math as m\n"
        "m.warm_up(); print(m.parse_answer.cache_info().currsize)\n"
        "m.parse_answer.cache_clear(); m.warm_up(); print(m.parse_answer.cache_info().currsize)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(_WARM_UP_ANSWERS)), "0"]


def test_closed_forms_share_a_vote_to_twelve_significant_digits():
    """Documented in answer_key: \\sqrt{2} and a value 5e-13 away vote together."""
    near = r"\sqrt{2} + 5 \cdot 10^{-13}"
    assert answer_key(r"\sqrt{2}") == answer_key(near)
    assert answer_key(r"\sqrt{2}") != answer_key(r"\sqrt{2} + 5 \cdot 10^{-12}")


def test_hedging_shows_at_most_four_answers():
    four = check_math(["1", "2", "3", "4"], "1").detail
    assert four == "hedging: 4 different answers (1; 2; 3; 4)"
    five = check_math(["1", "2", "3", "4", "5"], "1").detail
    assert five == "hedging: 5 different answers (1; 2; 3; 4; ...)"


def test_a_long_answer_is_shown_cut_to_sixty_characters():
    assert Answer("x" * 60, None).shown == "x" * 60
    assert Answer("x" * 61, None).shown == "x" * 57 + "..."
