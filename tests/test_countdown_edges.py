"""Countdown checker edges found by a mutation run (docs/development.md): operators below the
root, exact (never truncated) division, whitespace, the length cap and the default score."""

from __future__ import annotations

import pytest

from assay.verifiers.countdown import MAX_ANSWER_CHARS, MAX_DEPTH, check_countdown


@pytest.mark.parametrize("text", ["1 + 6 ** 2", "2 * (1 - 6 // 2)", "1 * (2 - +6)", "-(1 + 2 ** 6)"])
def test_a_forbidden_operator_below_the_root_is_refused(text):
    verdict = check_countdown(text, [1, 6, 2], 37)
    assert verdict.status == "invalid" and "not allowed" in verdict.detail, verdict


def test_division_is_exact_never_truncated():
    half = check_countdown("3 / 2", [3, 2], 1)
    assert half.status == "incorrect" and "3/2" in half.detail, half
    assert check_countdown("7 / 2 * 2", [7, 2, 2], 7).correct  # 3.5 * 2, not 3 * 2
    assert check_countdown("7 / 2 * 2", [7, 2, 2], 6).status == "incorrect"


def test_whitespace_anywhere_is_ignored():
    assert check_countdown(" 5 +\n1\t* 2 \r\n", [5, 1, 2], 7).correct
    assert check_countdown("5+1*2" + " " * (2 * MAX_ANSWER_CHARS), [5, 1, 2], 7).correct


def test_the_length_cap_counts_characters_without_whitespace():
    at_cap = "1" * MAX_ANSWER_CHARS  # one long literal: parsed, but not a given number
    accepted = check_countdown(at_cap + "\n " * 50, [11], 11)
    assert accepted.status == "incorrect" and "beyond the given numbers" in accepted.detail
    refused = check_countdown(at_cap + "1", [11], 11)
    assert refused.status == "invalid" and f"longer than {MAX_ANSWER_CHARS}" in refused.detail


def test_the_default_format_score_is_zero():
    for text in ("5+1+2", "5+1", "5/(1-1)*2"):
        verdict = check_countdown(text, [5, 1, 2], 7)
        assert verdict.status == "incorrect" and verdict.score == 0.0, (text, verdict)
        assert check_countdown(text, [5, 1, 2], 7, format_score=0.1).score == 0.1


@pytest.mark.parametrize("text,node", [("()", "Tuple"), ("1(2)", "Call"), ("2*()", "Tuple"), ("(1)(2)", "Call")])
def test_nodes_outside_the_grammar_are_invalid_even_with_a_format_score(text, node):
    verdict = check_countdown(text, [1, 2], 3, format_score=0.1)
    assert verdict.status == "invalid" and verdict.score == 0.0 and node in verdict.detail, verdict


def test_each_operator_is_one_level_of_depth():
    chain = "1" + "+1" * (MAX_DEPTH - 1)  # the deepest leaf sits MAX_DEPTH levels down
    assert check_countdown(chain, [1] * MAX_DEPTH, MAX_DEPTH).correct
    deeper = check_countdown(chain + "+1", [1] * (MAX_DEPTH + 1), MAX_DEPTH + 1)
    assert deeper.status == "invalid" and "nested deeper" in deeper.detail


def test_exactly_max_depth_parentheses_are_accepted():
    nested = "(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH
    assert check_countdown(nested, [1], 1).correct
    assert check_countdown("(" + nested + ")", [1], 1).status == "invalid"


def test_each_unary_minus_is_one_level_of_depth():
    """Unary minus nests like any operator: the leaf under MAX_DEPTH - 1 of them sits at
    MAX_DEPTH (accepted); one more is refused, with no parenthesis to count."""
    from assay.verifiers.countdown import parse_expression

    assert not isinstance(parse_expression("-" * (MAX_DEPTH - 1) + "1"), str)
    assert "nested deeper" in parse_expression("-" * MAX_DEPTH + "1")
    # the same chain as the right operand of a sum, one level further down
    assert not isinstance(parse_expression("1+" + "-" * (MAX_DEPTH - 2) + "1"), str)
    assert "nested deeper" in parse_expression("1+" + "-" * (MAX_DEPTH - 1) + "1")


@pytest.mark.parametrize("text, reason", [("  \n ", "empty answer"),
                                          ("1 + 2 = 3", "an equation, not an expression")])
def test_an_empty_answer_and_an_equation_say_what_they_are(text, reason):
    """The detail names the problem (a user reads it), not a generic parse failure."""
    from assay.verifiers.countdown import parse_expression

    assert parse_expression(text).startswith(reason)
