"""The code env's host-side harness as plain functions (found by a full mutation run of
code_harness.py, docs/development.md): how an answer is joined to its code prompt, the
tests' parse error, and the report's immutability."""

from __future__ import annotations

import dataclasses
import json

import pytest

from assay.envs import code_harness as harness  # its Test* classes are not pytest tests
from assay.envs.code_harness import count_tests, solution_source, syntax_problem

PROMPT = "import math\n\ndef f(x):\n    \"\"\"Twice x.\"\"\"\n"


def test_no_code_prompt_runs_the_answer_as_it_is():
    assert solution_source("def f(x):\n    return 2 * x\n", "") == "def f(x):\n    return 2 * x\n"


@pytest.mark.parametrize("indent", ["    ", "\t"])
def test_an_indented_body_continues_the_prompt(indent):
    body = f"\n{indent}return 2 * x\n"  # a blank first line: the first non-blank line decides
    assert solution_source(body, PROMPT) == PROMPT + body


def test_a_whole_program_follows_the_prompt_after_blank_lines():
    program = "def f(x):\n    return 2 * x\n"
    assert solution_source(program, PROMPT) == PROMPT.rstrip("\n") + "\n\n\n" + program


def test_tests_that_do_not_parse_name_the_line():
    with pytest.raises(harness.TestsError, match=r"the tests do not parse: line 2: "):
        count_tests("assert f(1) == 2\nassert f(2) ==\n")


def test_tests_without_an_assert_are_refused():
    with pytest.raises(harness.TestsError, match="no assert statement"):
        count_tests("def check(candidate):\n    candidate(1)\n")


# Asserts in every kind of statement body, numbered depth first in source order.
NESTED = """
assert ok(0)
def check(candidate):
    assert ok(1)
    if candidate:
        assert ok(2)
    else:
        assert ok(3)
    for i in range(1):
        assert ok(4)
    else:
        assert ok(5)
    while False:
        assert ok(99)
    try:
        assert ok(6)
    except Exception:
        assert ok(99)
    else:
        assert ok(7)
    finally:
        assert ok(8)
    with open("/dev/null") as handle:
        assert ok(9)
    match candidate:
        case 1:
            assert ok(10)
        case _:
            assert ok(99)
    class Inner:
        assert ok(11)
    assert boom(), "an exception is a failure"
    assert ok(12) and False
assert ok(13); assert ok(14)
check(1)
"""


def test_the_judge_numbers_every_assert_in_source_order_and_carries_on():
    import ast

    from assay.envs import code_judge

    tree = ast.parse(NESTED)
    assert code_judge.count_asserts(tree) == count_tests(NESTED) == 19
    assert code_judge.record_asserts(tree) == 19
    assert not any(isinstance(node, ast.Assert) for node in ast.walk(tree))
    recorded, seen = [], []

    def ok(label):
        seen.append(label)
        return True

    def boom():
        raise ValueError("no")

    reasons = []
    scope = {"ok": ok, "boom": boom, code_judge.RECORD: lambda number, passed: recorded.append((number, passed)),
             code_judge.REASON: lambda number, exc: reasons.append((number, code_judge.failure_reason(exc)))}
    exec(compile(tree, "tests.py", "exec", dont_inherit=True), scope)
    # ok(n) is assert number n until the first 99 (number 6); asserts 3 and the 99s never
    # run (the other branch, a dead loop, an unused handler, another case); 13 and 14 (17
    # and 18) run before check(1); boom's and the `and False` (15, 16) fail
    assert seen == [0, 13, 14, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert [n for n, _ in recorded] == [0, 17, 18, 1, 2, 4, 5, 7, 9, 10, 11, 12, 14, 15, 16]
    assert [n for n, passed in recorded if not passed] == [15, 16]
    assert reasons == [(15, "ValueError: no")]  # only the assert that raised has a reason


def test_a_report_cannot_be_changed_after_the_judge_wrote_it():
    report = harness.TestReport(passed=1, total=2, timed_out=False, problem=None, failed_ids=(1,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.passed = 2  # type: ignore[misc]


def test_code_that_cannot_be_compiled_says_why_without_running():
    assert syntax_problem("def f(:\n") == "the code does not parse: line 1: invalid syntax"
    assert syntax_problem("x = 1\0") == "the code does not parse: source code string cannot contain null bytes"
    nested = syntax_problem("x = " + "-" * 200_000 + "1")  # the compiler runs out of room
    assert nested is not None and nested.startswith("the code cannot be compiled: ")
    assert syntax_problem("def f():\n    return 1\n") is None


def test_a_reports_reasons_are_kept_only_as_short_text_of_failed_tests():
    from assay.envs import code_judge

    line = code_judge.RESULT_PREFIX + json.dumps({
        "task": 0, "outcomes": {"0": True, "1": False, "2": False, "3": False},
        "reasons": {"0": "ValueError: a passed test has none", "1": "x" * 5000, "2": ["not", "text"],
                    "x": "not a test", "9": "no such test"},
        "problem": None, "timed_out": False,
    })
    report = harness.read_judge_reports(line + "\n", [4])[0]
    assert report.failed_ids == (1, 2, 3)
    assert report.reasons == {1: "x" * code_judge.REASON_CHARS}
    assert report.first_failure() == f"#2 ({'x' * code_judge.REASON_CHARS})"
    bare = harness.read_judge_reports(line.replace('"reasons"', '"other"') + "\n", [4])[0]
    assert bare.reasons == {} and bare.first_failure() == "#2"


@pytest.mark.parametrize("exc, reason", [
    (ValueError("no"), "ValueError: no"),  # a test's own exception
    (ValueError("ValueError: no"), "ValueError: no"),  # a solution's, named as it crossed over
    (KeyError(10**100), "KeyError"),  # not one string: never formatted (it could be huge)
    (OSError(2, "No such file"), "FileNotFoundError"),  # (errno 2 makes that subclass)
    (ValueError(), "ValueError"),
    (ValueError("x" * 1000), "ValueError: " + "x" * 188),
])
def test_a_failure_reason_is_the_type_and_a_string_message_cut_short(exc, reason):
    from assay.envs import code_judge

    assert code_judge.failure_reason(exc) == reason


def test_a_candidate_failure_reads_in_its_own_words():
    from assay.envs.code_judge import CandidateFailure, failure_reason

    assert failure_reason(CandidateFailure("the solution defines no function 'f'")) == (
        "the solution defines no function 'f'")
    # a solution's own exception class crosses over as a CandidateFailure holding "Name: text"
    assert failure_reason(CandidateFailure("CandidateFailure: forged")) == "forged"
    assert failure_reason(CandidateFailure()) == "CandidateFailure"
