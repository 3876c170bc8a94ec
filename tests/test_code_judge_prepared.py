"""Tests and solutions compiled on the host (code_harness.prepared_tests, compiled_solution):
the judge and the candidate load them only where the jail's Python has the host's bytecode,
and tests that compile only in the judge still say why they fail."""

from __future__ import annotations

import marshal
import warnings

import pytest

import assay.envs.code as code_module
from assay.envs import code_harness


def verify(env, tests: str, solution: str, entry_point: str = "f"):
    task = env.make_task({"entry_point": entry_point, "tests": tests}, id=entry_point)
    return env.verify(task, f"```python\n{solution}\n```\n")


def test_prepared_tests_are_the_rewritten_tests_and_their_plan():
    data, plan = code_harness.prepared_tests("assert f(1) == 2\nassert f(2) == 3\n", "f")
    assert plan == [{"args": [{"i": "1"}], "kwargs": {}}, {"args": [{"i": "2"}], "kwargs": {}}]
    recorded = []
    scope = {"__assay_record__": lambda number, ok: recorded.append((number, ok)), "f": lambda x: x + 1}
    exec(marshal.loads(data), scope)  # the asserts record and carry on
    assert recorded == [(0, True), (1, True)]
    assert code_harness.prepared_tests("x = 1\nreturn x\nassert x\n", "f") == (b"", None)


def test_tests_that_only_the_compiler_refuses_are_reported_by_the_judge(code_env):
    # `return` outside a function parses, so the host counts the assert; compiling fails
    verdict = verify(code_env, "assert f() == 1\nreturn 5\n", "def f():\n    return 1\n")
    assert verdict.score == 0.0, verdict
    assert "the tests stopped early: SyntaxError: 'return' outside function" in verdict.detail, verdict


@pytest.fixture
def other_bytecode(monkeypatch):
    """The host claims another Python's bytecode: the jail must use the sources."""
    monkeypatch.setattr(code_harness, "MAGIC_NUMBER", b"\x00\x00\r\n")


ALWAYS_PASSES = code_harness.prepared_tests("assert True\n", "f")


def always_passes(source: str, entry_point: str) -> tuple[bytes, None]:
    """Compiled tests that differ from the source sent beside them."""
    return ALWAYS_PASSES


WRONG = "def f():\n    return 2\n"


def test_the_judge_runs_the_hosts_compiled_tests(code_env, monkeypatch):
    monkeypatch.setattr(code_harness, "prepared_tests", always_passes)
    assert verify(code_env, "assert f() == 1\n", WRONG).correct  # it ran `assert True`


def test_with_other_bytecode_the_judge_compiles_the_tests_itself(code_env, monkeypatch, other_bytecode):
    monkeypatch.setattr(code_harness, "prepared_tests", always_passes)
    verdict = verify(code_env, "assert f() == 1\n", WRONG)
    assert verdict.score == 0.0, verdict


def returns_one(source: str) -> tuple[bytes, None]:
    """A compiled solution that differs from the source sent beside it."""
    return marshal.dumps(compile("def f():\n    return 1\n", "solution.py", "exec")), None


def test_the_candidate_runs_the_hosts_compiled_solution(code_env, monkeypatch):
    monkeypatch.setattr(code_module, "compiled_solution", returns_one)
    assert verify(code_env, "assert f() == 1\n", WRONG).correct


def test_with_other_bytecode_the_candidate_compiles_the_solution_itself(code_env, monkeypatch, other_bytecode):
    monkeypatch.setattr(code_module, "compiled_solution", returns_one)
    assert verify(code_env, "assert f() == 1\n", WRONG).score == 0.0


def test_preparing_tests_shows_no_warning_on_the_host():
    # an invalid escape in a task's tests warns when compiled; the host must stay quiet
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        data, _ = code_harness.prepared_tests("assert f('\\d') == '\\\\d'  # a source of this test alone\n", "f")
    assert data and seen == []
