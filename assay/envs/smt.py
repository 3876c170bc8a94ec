"""SMT: constraints in SMT-LIB 2, answered with an assignment or `unsat`, checked by z3.

A task is `{"smtlib": "(declare-const x Int) ... (assert ...)"}` plus an optional
`prompt`; generated tasks also record `expected` (`sat` or `unsat`), a witness
`solution` for the satisfiable ones, their `kind` and `difficulty` (1-5). No label is
needed to verify: substituting an assignment decides it, and `unsat` is right only when
z3 proves it within the time limit (`unknown` is a `timeout`, never rewarded).

Checks run in worker processes killed at `time_limit` (`verification = "workers"`), with
z3's memory capped at `memory_mb`; scripts and answers are bounded in length, nesting and
number size before z3 sees them (`assay.verifiers.smtlib`). z3 (the `z3-solver` package,
the `smt` extra) is imported only to verify; generating tasks needs no solver.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from assay.envs.base import Environment, Task
from assay.envs.smt_formats import PROMPT_FORMATS, CompactFormat, SmtLibFormat
from assay.envs.smt_generate import GENERATORS, KINDS
from assay.errors import AssayError
from assay.verifiers import Failure, Verdict
from assay.verifiers.reasoning import outside_reasoning
from assay.verifiers.smt import INSTALL_HINT, Z3Missing, check_smt, find_model, load, require_z3
from assay.verifiers.smtlib import (
    MAX_SCRIPT_CHARS,
    AnswerError,
    SmtLibError,
    format_assignment,
    is_unsat_claim,
    parse_assignment,
    parse_script,
)

PROMPT_STYLES = tuple(PROMPT_FORMATS)


class SolverMissing(AssayError, RuntimeError):
    """The env's solver is not installed; the message says how to install it."""


@dataclass
class SmtOptions:
    """Knobs of the SMT generators and verifier (`--set KEY=VALUE`)."""

    kinds: tuple[str, ...] = KINDS  #: generator families to draw from, in turn
    min_difficulty: int = 1  #: easiest generated task (1-5)
    max_difficulty: int = 3  #: hardest generated task (1-5)
    max_value: int = 9  #: hidden solutions' values lie in [-max_value, max_value]
    #: "smtlib" (instructions, the script, <answer> tags) or "compact" (`x y|x+y=10;x>7:`,
    #: the completion itself is the answer; the model organism's form)
    prompt_style: str = "smtlib"
    time_limit: float = 5.0  #: seconds per check before it is a `timeout` (the worker is killed)
    memory_mb: int = 512  #: z3's memory cap per worker; past it a check is a `timeout`

    def __post_init__(self) -> None:
        self.kinds = tuple(self.kinds)
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of {', '.join(KINDS)}; got {unknown or 'none'}")
        if not 1 <= self.min_difficulty <= self.max_difficulty <= 5:
            raise ValueError("need 1 <= min_difficulty <= max_difficulty <= 5")
        if not 1 <= self.max_value <= 1000:
            raise ValueError(f"max_value must be in [1, 1000], got {self.max_value}")
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {self.prompt_style!r}")
        if not (math.isfinite(self.time_limit) and 0 < self.time_limit <= 3600):
            raise ValueError(f"time_limit must be a number of seconds in (0, 3600], got {self.time_limit!r}")
        if not 16 <= self.memory_mb <= 65536:
            raise ValueError(f"memory_mb must be in [16, 65536], got {self.memory_mb}")


class SmtEnv(Environment):
    """SMT-LIB constraints; the answer is an assignment of every constant, or `unsat`."""

    name = "smt"
    description = "SMT-LIB constraints over Int/Real/Bool; answer an assignment or unsat, checked by z3 (label-free)"
    Options = SmtOptions
    verification = "workers"
    task_schema = {
        "type": "object",
        "required": ["smtlib"],
        "properties": {
            "id": {"type": ["string", "integer"]},
            "prompt": {"type": "string"},
            "smtlib": {"type": "string", "minLength": 1, "maxLength": MAX_SCRIPT_CHARS},
            "expected": {"enum": ["sat", "unsat"]},
            "solution": {"type": "string", "minLength": 1},
            "kind": {"type": "string"},
            "difficulty": {"type": "integer", "minimum": 1, "maximum": 5},
        },
    }

    def __init__(self, /, **options: Any) -> None:
        super().__init__(**options)
        self.time_limit = self.options.time_limit

    # -- making tasks ---------------------------------------------------------------

    def generate(self, n: int, seed: int = 0) -> list[Task]:
        rng = random.Random(seed)
        o = self.options
        tasks = []
        for i in range(n):
            kind = o.kinds[i % len(o.kinds)]
            difficulty = rng.randint(o.min_difficulty, o.max_difficulty)
            smtlib, expected, solution = GENERATORS[kind](rng, difficulty, o.max_value)
            fields: dict[str, Any] = {"smtlib": smtlib, "expected": expected}
            if solution is not None:
                fields["solution"] = solution
            fields.update(kind=kind, difficulty=difficulty)
            tasks.append(self.make_task(fields, id=f"smt-{seed}-{i}"))
        return tasks

    @property
    def prompt_format(self) -> SmtLibFormat | CompactFormat:
        """How tasks are put to the model and replies read (the `prompt_style` option)."""
        return PROMPT_FORMATS[self.options.prompt_style]

    def render_prompt(self, task: Task) -> str:
        return self.prompt_format.render(task)

    def task_problems(self, fields: dict[str, Any]) -> list[str]:
        """The script must parse within the caps, and a recorded answer must fit it."""
        try:
            script = parse_script(fields["smtlib"])
        except SmtLibError as exc:
            return [f"smtlib: {exc}"]
        solution = fields.get("solution")
        if solution is None:
            return []
        if fields.get("expected") == "unsat":
            return ["solution: a task expected to be unsat has no solution"]
        try:
            parse_assignment(str(solution), script.constants)
        except AnswerError as exc:
            return [f"solution: {exc}"]
        return []

    def audit_tasks(self, tasks: Sequence[Task]) -> list[tuple[int, str]]:
        """z3 reads every script, and a recorded `expected`/`solution` must be what z3 finds:
        a solution must satisfy the assertions, `unsat` must be proved within the limit."""
        self.check_available()
        require_z3()  # before the workers fork, so that each starts with z3 loaded
        results = self._pool(_default_workers()).map(
            self._audit_one, [(task,) for task in tasks], timeout=self.time_limit
        )
        out = []
        for index, result in enumerate(results):
            if isinstance(result, Failure):
                what = "z3 took longer than" if result.kind == "timeout" else "the check failed:"
                detail = f"{self.time_limit:g} s" if result.kind == "timeout" else result.detail
                out.append((index, f"smtlib: {what} {detail}"[:1000]))
            elif result is not None:
                out.append((index, result))
        return out

    def _audit_one(self, task: Task) -> str | None:
        smtlib, expected = str(task["smtlib"]), task.get("expected")
        limits = {"time_limit": self.time_limit, "memory_mb": self.options.memory_mb}
        try:
            load(smtlib)
        except SmtLibError as exc:
            return f"smtlib: {exc}"
        if expected == "unsat":
            verdict = check_smt(smtlib, "unsat", **limits)
            return None if verdict.correct else f"expected: recorded unsat, but {verdict.detail}"
        if task.get("solution") is not None:
            verdict = check_smt(smtlib, str(task["solution"]), **limits)
            return None if verdict.correct else f"solution: {verdict.detail}"
        if expected == "sat":
            found = find_model(smtlib, time_limit=self.time_limit)
            if found is False:
                return "expected: recorded sat, but z3 proved the assertions unsatisfiable"
            if found is None:
                return f"expected: z3 could not find a model within {self.time_limit:g} s"
        return None

    # -- verifying ------------------------------------------------------------------

    def check_available(self) -> None:
        try:
            require_z3()
        except Z3Missing:
            raise SolverMissing(f"env 'smt': {INSTALL_HINT}") from None

    def extract(self, completion: str) -> str | None:
        # an assignment inside <think> is a draft, not the answer (`assay audit`'s reasoning_only)
        return self.prompt_format.extract(outside_reasoning(completion))

    def check(self, task: Task, answer: str) -> Verdict:
        return check_smt(
            str(task["smtlib"]), answer,
            time_limit=self.time_limit, memory_mb=self.options.memory_mb,
        )


    def answer_key(self, task: Task, answer: str) -> Hashable:
        """`unsat`, or the assignment's exact values in declaration order, so that
        `x=8, y=1/2` and `y = 0.5; x = 8` share a key; otherwise the text without spaces."""
        if is_unsat_claim(answer):
            return "unsat"
        try:
            constants = parse_script(str(task["smtlib"])).constants
            values = parse_assignment(answer, constants)
        except (SmtLibError, AnswerError, KeyError):
            return "".join(answer.split())
        return format_assignment({name: values[name] for name in constants})


def _default_workers() -> int:
    import os

    return os.cpu_count() or 1
