"""Test feedback for the code env (`--set env.feedback=tests`): after a submission that
fails, the model is shown which of the *visible* tests it failed and may submit again.

The visible tests are the ones the prompt shows: a procedural task's `shown` examples,
the first stdin/stdout case of an io task, every assert of a task whose prompt lists its
tests. HumanEval's tests are all hidden, so there the feedback can only say that the code
does not parse. The hidden tests still decide the verdict, on the last submission, as
for one turn: feedback never reveals a test the prompt did not show.

Each submission's visible tests run in the sandbox (each test its own run, the env's
time and memory limits; every episode's tests of a turn in one batch). The episode ends
when a submission passes every visible test, when it has no visible tests to fail, or
after `max_turns` submissions. The runs count as the episode's `tool_calls` (one per
submission checked), their failures and timeouts as `tool_errors` and `tool_timeouts`.

The feedback message follows the prompt's style: the full style names the failed
asserts (or cases) in words; the compact style (the code organism's `f(3)=10 f(5)=16:`)
restates the failed examples as a compact prompt, `f(5)=16:`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from assay.envs.code_harness import syntax_problem
from assay.envs.code_synth import shown_examples
from assay.envs.episode import Episode
from assay.envs.task import Task

FEEDBACK = ("none", "tests")

AFTER_FAILURE = "Answer with the corrected complete program in a single ```python code block."


def assert_lines(fields: dict[str, Any]) -> list[str]:
    """A task's assert tests, one line each."""
    return [line for line in fields.get("tests", "").splitlines() if line.startswith("assert ")]


def visible_tests(task: Task) -> list[Task]:
    """One task per test the prompt shows (see the module docstring), each checkable by
    the code env on its own; none for a task whose tests are all hidden."""
    f = task.fields
    if "io" in f:
        cases = f["io"][: f.get("shown", 1)]
        return [Task(f"{task.id}/visible-{i}", "", {"io": [case]}) for i, case in enumerate(cases)]
    if "tests" not in f or "code_prompt" in f:
        return []  # HumanEval: the prompt is a signature and a docstring, the tests hidden
    lines = assert_lines(f)
    if "shown" in f:
        lines = lines[: f["shown"]]
    keep = {k: f[k] for k in ("entry_point", "setup") if k in f}
    return [Task(f"{task.id}/visible-{i}", "", {**keep, "tests": line + "\n"})
            for i, line in enumerate(lines)]


def compact_example(test: Task) -> str:
    """A visible test as the compact prompt shows it: `f(3)=10`, or `"3\\n"="10\\n"`."""
    return shown_examples({**test.fields, "shown": 1})[0]


def failure_message(failed: Sequence[Task], total: int, *, compact: bool) -> str:
    """What the model reads after a submission that failed `failed` of `total` visible
    tests."""
    if compact:
        return " ".join(compact_example(t) for t in failed) + ":"
    shown = []
    for test in failed:
        if "io" in test.fields:
            case = test["io"][0]
            shown.append(f"input {json.dumps(case['stdin'])}, expected output "
                         f"{json.dumps(case['stdout'])}")
        else:
            shown.append(test["tests"].strip())
    listing = "\n".join(shown)
    return (f"Your program failed {len(failed)} of the {total} visible tests:\n"
            f"```\n{listing}\n```\n{AFTER_FAILURE}")


def unreadable_message(why: str, task: Task, *, compact: bool) -> str:
    """What the model reads after a submission that is not a program at all."""
    if compact:  # the compact language has no words: the examples again, as a prompt
        return task.prompt if task.prompt.endswith(":") else task.prompt + ":"
    return f"Your submission is not a program that runs: {why}.\n{AFTER_FAILURE}"


class TestFeedback:
    """Mixin for the code env: with `feedback=tests`, a submission that fails a visible
    test gets the failed tests as its observation; any other submission ends the episode."""

    options: Any

    def respond_many(self, episodes: Sequence[Episode]) -> list[str | None]:
        if self.options.feedback != "tests":
            return [None] * len(episodes)
        compact = self.options.prompt_style == "compact"
        answers: list[str | None] = [None] * len(episodes)
        checks: list[tuple[int, list[Task]]] = []  # (episode, its visible tests)
        pairs: list[tuple[Task, str | None]] = []
        for i, episode in enumerate(episodes):
            tests = visible_tests(episode.task)
            code = self.extract(episode.final_reply)  # type: ignore[attr-defined]
            if code is None:
                answers[i] = unreadable_message("no code found", episode.task, compact=compact)
                continue
            if not tests:
                problem = syntax_problem(code)
                if problem:
                    answers[i] = unreadable_message(problem, episode.task, compact=compact)
                continue
            checks.append((i, tests))
            pairs.extend((test, code) for test in tests)
        if not pairs:
            return answers
        verdicts = iter(self._verify_answers(pairs, workers=None, on_result=None))  # type: ignore[attr-defined]
        for i, tests in checks:
            episode, results = episodes[i], [next(verdicts) for _ in tests]
            episode.tool_calls += 1
            episode.tool_timeouts += any(v.status == "timeout" for v in results)
            if any(v.status == "error" for v in results):  # the sandbox failed, not the code:
                episode.tool_errors += 1  # the last submission's verdict is all that is left
                continue
            if all(v.status == "invalid" for v in results):  # the code does not parse
                answers[i] = unreadable_message(results[0].detail, episode.task, compact=compact)
                continue
            failed = [t for t, v in zip(tests, results, strict=True) if not v.correct]
            if failed:
                answers[i] = failure_message(failed, len(tests), compact=compact)
        return answers
