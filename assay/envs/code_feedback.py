"""Test feedback for the code env (`--set env.feedback=tests`): after a submission that
fails, the model is shown which of the *visible* tests it failed and may submit again.

The visible tests are the ones the prompt shows: a procedural task's `shown` examples,
the first stdin/stdout case of an io task, each assert of `tests` whose text the prompt
holds (the env's own prompt lists them all; a task's own `prompt` may show none), each
run with the statements before it (imports, helpers). HumanEval's tests are all hidden,
so there the feedback can only say that the code does not parse. The hidden tests still
decide the verdict, on the last submission, as for one turn: feedback never reveals a
test the prompt did not show.

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

import ast
import json
from collections.abc import Sequence
from typing import Any

from assay.envs.code_harness import syntax_problem
from assay.envs.code_synth import shown_examples
from assay.envs.episode import Episode
from assay.envs.task import Task

FEEDBACK = ("none", "tests")

AFTER_FAILURE = "Answer with the corrected complete program in a single ```python code block."


def split_asserts(tests: str) -> list[tuple[str, str]]:
    """Each top-level assert of `tests` as written (over as many lines as it takes), with
    the statements before it that are not asserts (imports, helpers: what it needs to
    run): [(preamble, assert)]. Empty when the tests do not parse."""
    try:
        tree = ast.parse(tests)
    except (SyntaxError, ValueError):
        return []
    found, before = [], []
    for node in tree.body:
        if isinstance(node, ast.Assert):
            found.append(("".join(before), ast.get_source_segment(tests, node) or ast.unparse(node)))
        else:  # unparsed, not cut from the source: a decorator's lines come with it
            before.append(ast.unparse(node) + "\n")
    return found


def visible_tests(task: Task) -> list[Task]:
    """One task per test the prompt shows (see the module docstring), each checkable by
    the code env on its own; none for a task whose tests are all hidden.

    Of a `tests` task: the first `shown` asserts of a procedural task (its prompt shows
    their examples); otherwise each assert whose text the prompt holds (the env's own
    prompt lists them all; a task's own `prompt` may show some, or none). Each is checked
    with the statements before it that are not asserts as its setup."""
    f = task.fields
    if "io" in f:
        cases = f["io"][: f.get("shown", 1)]
        return [Task(f"{task.id}/visible-{i}", "", {"io": [case]}) for i, case in enumerate(cases)]
    if "tests" not in f or "code_prompt" in f:
        return []  # HumanEval: the prompt is a signature and a docstring, the tests hidden
    asserts = split_asserts(f["tests"])
    if "shown" in f:
        asserts = asserts[: f["shown"]]
    else:
        asserts = [(before, test) for before, test in asserts if test in task.prompt]
    visible = []
    for i, (before, test) in enumerate(asserts):
        fields = {"entry_point": f["entry_point"], "tests": test + "\n"}
        setup = "".join(part for part in (f.get("setup", ""), before) if part)
        if setup:
            fields["setup"] = setup
        visible.append(Task(f"{task.id}/visible-{i}", "", fields))
    return visible


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
