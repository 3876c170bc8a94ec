"""Turning code tasks into sandbox jobs, and sandbox results into verdicts.

Assert-style tasks run the judge program (code_judge.py) in the sandbox: the
solution in one process, the tests in another (see that module for why). The
judge rewrites every `assert` of the tests to record its outcome and carry on;
the host counts the asserts the same way and scores the judge's report.
Stdin/stdout tasks run the solution itself once per case; the host compares the
output with the expected text, which never enters the sandbox, and requires a
clean exit.
"""

from __future__ import annotations

import ast
import functools
import json
import marshal
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.util import MAGIC_NUMBER
from pathlib import Path

from assay.envs import code_judge

JUDGE_SOURCE = Path(code_judge.__file__).read_text(encoding="utf-8")


class TestsError(ValueError):
    """The task's tests are unusable (they do not parse, or contain no assert)."""


@functools.lru_cache(maxsize=4096)  # a task's tests are checked once per completion
def count_tests(source: str) -> int:
    """How many asserts the tests hold, numbered as the judge will number them.

    The judge rewrites the asserts itself, inside the sandbox (parsing there is cheaper
    than sending rewritten source); the host only checks that there is something to run.
    """
    try:
        with warnings.catch_warnings():  # an invalid escape in the tests must not print here
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except SyntaxError as exc:
        raise TestsError(f"the tests do not parse: line {exc.lineno}: {exc.msg}") from None
    count = code_judge.count_asserts(tree)
    if count == 0:
        raise TestsError("the tests contain no assert statement")
    return count


@dataclass(frozen=True)
class JudgeTask:
    """One assert-style check as the judge receives it."""

    solution: str
    entry_point: str
    tests: str
    setup: str
    budget_s: float  #: the candidate's time for the task, from the task's start
    #: the solution compiled here, marshalled (`compiled_solution`): the candidate loads it
    #: instead of compiling it where the jail's Python has this one's bytecode
    solution_code: bytes = b""


@functools.lru_cache(maxsize=1024)
def prepared_tests(source: str, entry_point: str) -> tuple[bytes, list[dict] | None]:
    """The tests as the judge runs them (asserts rewritten, compiled, marshalled) and the plan
    of their calls (`code_judge.planned_calls`), made once here: in the judge, a fresh
    process per run, they cost about a millisecond a task, a fifth of its time on HumanEval.
    (b"", None) when they do not compile: the judge then compiles them and says why."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code, plan = code_judge.prepare_tests(source, entry_point)
            return marshal.dumps(code), plan
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return b"", None


def judge_stdin(tasks: Sequence[JudgeTask], group_filter: bytes | None) -> bytes:
    """What the judge reads: a header (sizes and entry points only, read before it forks
    the spawner), then each task's solution, tests, compiled tests and compiled solution (used
    where the jail's Python has this one's bytecode: `magic`). Without a group filter the judge judges the
    first task only (nothing would keep the next candidate apart)."""
    parts, entries = [], []
    for task in tasks:
        solution = task.solution.encode("utf-8", errors="surrogateescape")
        code, plan = prepared_tests(task.tests, task.entry_point)
        spec = json.dumps({"tests": task.tests, "setup": task.setup, "budget_s": task.budget_s, "plan": plan}).encode()
        entries.append({"entry_point": task.entry_point, "solution_len": len(solution), "spec_len": len(spec),
                        "code_len": len(code), "solution_code_len": len(task.solution_code)})
        parts += [solution, spec, code, task.solution_code]
    head = json.dumps({"tasks": entries, "group_filter": group_filter.hex() if group_filter else "",
                       "magic": MAGIC_NUMBER.hex()}).encode()
    return b"".join([struct.pack(">Q", len(head)), head, *parts])


@dataclass(frozen=True)
class TestReport:
    """What the judge found: how many of `total` asserts passed, and why others did not."""

    passed: int
    total: int
    timed_out: bool
    problem: str | None
    failed_ids: tuple[int, ...]
    #: failed test id -> the exception its assert failed on, for the first few that raised
    reasons: dict[int, str] = field(default_factory=dict)

    def first_failure(self) -> str:
        """`#N` of the first failed assert (counted from 1), with what it raised if it did:
        `#2 (ValueError: bad input)`."""
        first = self.failed_ids[0]
        why = self.reasons.get(first)
        return f"#{first + 1}" + (f" ({why})" if why else "")


def read_judge_reports(stdout: str, totals: Sequence[int]) -> dict[int, TestReport]:
    """The judge's result lines (its private stdout) by task index; a task without a
    well-formed line is missing (the batch stopped before or during it)."""
    reports: dict[int, TestReport] = {}
    for line in stdout.splitlines():
        if not line.startswith(code_judge.RESULT_PREFIX):
            continue
        try:
            report = json.loads(line[len(code_judge.RESULT_PREFIX) :])
            index = report["task"]
            if type(index) is not int or not 0 <= index < len(totals):
                continue
            total = totals[index]
            outcomes = {int(k): v is True for k, v in report["outcomes"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        passed = sum(1 for i in range(total) if outcomes.get(i) is True)
        failed = tuple(i for i in range(total) if outcomes.get(i) is not True)
        problem = report.get("problem")
        timed_out = bool(report.get("timed_out"))
        reports[index] = TestReport(passed, total, timed_out, problem if isinstance(problem, str) else None,
                                    failed, _reasons(report.get("reasons"), failed))
    return reports


def _reasons(found: object, failed: tuple[int, ...]) -> dict[int, str]:
    """The report's reasons that belong to failed tests, each a string of at most
    `REASON_CHARS` (anything else in the line is dropped, not trusted)."""
    if not isinstance(found, dict):
        return {}
    reasons = {}
    for key, text in list(found.items())[: code_judge.REASONS_KEPT]:
        if isinstance(key, str) and key.isdigit() and int(key) in failed and isinstance(text, str):
            reasons[int(key)] = text[: code_judge.REASON_CHARS]
    return reasons


def solution_source(answer: str, code_prompt: str) -> str:
    """The program to run: the answer, after the task's code prompt when it has one.

    HumanEval prompts hold imports and helpers a completion relies on. A completion
    that continues the prompt (an indented body) is appended to it; a complete
    program is appended after a newline, so its definitions replace the prompt's stub.
    """
    if not code_prompt:
        return answer
    first = next((line for line in answer.splitlines() if line.strip()), "")
    if first[:1] in (" ", "\t"):
        return code_prompt + answer
    return code_prompt.rstrip("\n") + "\n\n\n" + answer


def outputs_match(actual: str, expected: str, mode: str) -> bool:
    """Compare program output with the expected text (plain strings, on the host)."""
    if mode == "exact":
        return actual == expected
    return _normalise(actual) == _normalise(expected)


def _normalise(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def syntax_problem(source: str) -> str | None:
    """Why the source does not compile, or None. Compiling runs nothing."""
    return compiled_solution(source)[1]


def compiled_solution(source: str) -> tuple[bytes, str | None]:
    """The solution compiled as the candidate would compile it, marshalled, or (b"", why it
    does not compile). Compiling runs nothing."""
    try:
        with warnings.catch_warnings():  # a completion's `1if` must not print on the host
            warnings.simplefilter("ignore")
            return marshal.dumps(compile(source, "solution.py", "exec", dont_inherit=True)), None
    except SyntaxError as exc:
        where = f"line {exc.lineno}: " if exc.lineno else ""  # a NUL byte has no line
        return b"", f"the code does not parse: {where}{exc.msg}"
    except (ValueError, MemoryError, RecursionError) as exc:
        return b"", f"the code cannot be compiled: {type(exc).__name__}"
