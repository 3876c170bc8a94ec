"""The code env's host-side harness as plain functions (found by a full mutation run of
code_harness.py, docs/development.md): how an answer is joined to its code prompt, the
tests' parse error, and the report's immutability."""

from __future__ import annotations

import dataclasses

import pytest

from assay.envs import code_harness as harness  # its Test* classes are not pytest tests
from assay.envs.code_harness import instrument_tests, solution_source

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
        instrument_tests("assert f(1) == 2\nassert f(2) ==\n")


def test_a_report_cannot_be_changed_after_the_judge_wrote_it():
    report = harness.TestReport(passed=1, total=2, timed_out=False, problem=None, failed_ids=(1,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.passed = 2  # type: ignore[misc]
