"""Countdown: reach a target number with + - * / over given numbers, each used once.

Tasks are solvable by construction: the generator draws numbers, combines them
with random operations (integer intermediates, exact division only) and takes
the result as the target; the construction is kept as the task's `solution`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable
from dataclasses import dataclass
from fractions import Fraction

from assay.envs import countdown_probes
from assay.envs.base import Environment, OptionError, Task, label_offset, seeded_random

# `compact_prompt` and `extract_answer_tag` stay importable from here, where they used to live.
from assay.envs.countdown_formats import (  # noqa: F401
    PROMPT_FORMATS,
    PromptFormat,
    compact_prompt,
    extract_answer_tag,
)
from assay.envs.tools import PythonTool, ToolOptions
from assay.verifiers import Verdict
from assay.verifiers.countdown import (
    check_countdown,
    expression_value,
)

#: The `prompt_style` option's values (see assay/envs/countdown_formats.py).
PROMPT_STYLES = tuple(PROMPT_FORMATS)
VOTE_KEYS = ("text", "value")
#: Largest number drawn and largest target magnitude: the verifier's literal and value caps.
MAX_VALUE = 10**6
MAX_TARGET = 10**12


def solve(numbers: list[int], target: int) -> str | None:
    """An expression over `numbers` (each exactly once) equal to `target`, or None.

    Exhaustive search with exact rational arithmetic over every way to combine two
    values with + - * /, remembering visited multisets of values.
    """
    goal = Fraction(target)
    seen: set[tuple[Fraction, ...]] = set()

    def search(items: list[tuple[Fraction, str]]) -> str | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == goal else None
        key = tuple(sorted(v for v, _ in items))
        if key in seen:
            return None
        seen.add(key)
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                (a, ea), (b, eb) = items[i], items[j]
                rest = items[:i] + items[i + 1 : j] + items[j + 1 :]
                options = [(a + b, f"({ea} + {eb})"), (a * b, f"{ea} * {eb}")]
                options += [(a - b, f"({ea} - {eb})"), (b - a, f"({eb} - {ea})")]
                if b != 0:
                    options.append((a / b, f"{ea} / ({eb})"))
                if a != 0:
                    options.append((b / a, f"{eb} / ({ea})"))
                for value, expr in options:
                    found = search(rest + [(value, expr)])
                    if found is not None:
                        return found
        return None

    found = search([(Fraction(n), str(n)) for n in numbers])
    return None if found is None else _strip_outer(found)


def _strip_outer(expr: str) -> str:
    if expr.startswith("(") and expr.endswith(")"):
        depth = 0
        for i, ch in enumerate(expr):
            depth += (ch == "(") - (ch == ")")
            if depth == 0 and i < len(expr) - 1:
                return expr
        return expr[1:-1]
    return expr


@dataclass
class CountdownOptions(ToolOptions):
    """Knobs of the countdown generator and verifier (`--set KEY=VALUE`); the Python tool's
    (`tools`, `max_turns`, ...: assay/envs/tools.py) come first."""

    min_numbers: int = 3  #: fewest numbers in a task
    max_numbers: int = 4  #: most numbers in a task (up to 6 keeps the solver fast)
    min_value: int = 1  #: smallest number drawn
    max_value: int = 100  #: largest number drawn
    min_target: int = 1  #: smallest target
    max_target: int = 100  #: largest target
    format_score: float = 0.0  #: score of a well-formed but wrong answer (TinyZero uses 0.1)
    #: "tinyzero" (instructions, answer in <answer> tags) or "compact" (`5 1 2>007:`, the
    #: completion itself is the answer; the model organism's form)
    prompt_style: str = "tinyzero"
    #: how majority vote / semantic entropy group answers: "text" (spaces ignored) or "value"
    vote_key: str = "text"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {self.prompt_style!r}")
        if self.vote_key not in VOTE_KEYS:
            raise ValueError(f"vote_key must be one of {VOTE_KEYS}, got {self.vote_key!r}")
        if not 2 <= self.min_numbers <= self.max_numbers <= 8:
            raise ValueError("need 2 <= min_numbers <= max_numbers <= 8")
        if not 0 <= self.min_value <= self.max_value:
            raise ValueError("need 0 <= min_value <= max_value")
        if self.min_target > self.max_target:
            raise ValueError("need min_target <= max_target")
        if self.max_value > MAX_VALUE or max(abs(self.min_target), abs(self.max_target)) > MAX_TARGET:
            raise ValueError(f"need max_value <= {MAX_VALUE} and targets within +-{MAX_TARGET}")
        # A wrong answer must never outscore a right one (1.0), and a score is a number.
        if not (math.isfinite(self.format_score) and 0.0 <= self.format_score <= 1.0):
            raise ValueError(f"format_score must be a finite number in [0, 1], got {self.format_score!r}")


class CountdownEnv(PythonTool, Environment):
    """Countdown: numbers and a target; answer an expression in <answer> tags."""

    name = "countdown"
    description = "Reach a target with + - * / over given numbers, each used once (solvable by construction)"
    time_limit = 5.0
    # Bounded by construction (length and depth caps, no evaluation of foreign literals):
    # checked in the caller's process, no worker pool.
    verification = "in_process"
    answer_template = "<answer>{}</answer>"
    probes = countdown_probes.PROBES  # its reward hacks for `assay audit`
    lab_options = {"vote_key": "value"}  # the lab's votes compare values: `5+1*2` is `2*1+5`
    Options = CountdownOptions
    task_schema = {
        "type": "object",
        "required": ["numbers", "target"],
        "properties": {
            "id": {"type": ["string", "integer"]},
            "prompt": {"type": "string"},
            "numbers": {
                "type": "array",
                "items": {"type": "integer"},
                "minItems": 1,
                "maxItems": 12,
            },
            "target": {"type": "integer"},
            "solution": {"type": "string"},
        },
    }

    def generate(self, n: int, seed: int = 0) -> list[Task]:
        rng = seeded_random(seed)
        return [self._one(rng, f"countdown-{seed}-{i}") for i in range(n)]

    def _one(self, rng: random.Random, task_id: str) -> Task:
        o = self.options
        for _ in range(10_000):
            count = rng.randint(o.min_numbers, o.max_numbers)
            numbers = [rng.randint(o.min_value, o.max_value) for _ in range(count)]
            built = _construct(rng, numbers)
            if built is not None and o.min_target <= built[0] <= o.max_target:
                value, expr = built
                fields = {"numbers": numbers, "target": value, "solution": expr}
                return self.make_task(fields, id=task_id)
        raise OptionError(  # the options ask for what cannot be built: name them
            "env 'countdown': could not build a countdown task with target in "
            f"[{o.min_target}, {o.max_target}] "
            f"from {o.min_numbers}-{o.max_numbers} numbers in [{o.min_value}, {o.max_value}]; "
            "widen the ranges"
        )

    @property
    def prompt_format(self) -> PromptFormat:
        """How tasks are put to the model and replies read (the `prompt_style` option)."""
        return PROMPT_FORMATS[self.options.prompt_style]

    def render_prompt(self, task: Task) -> str:
        return self.tool_prompt(self.prompt_format.render(task))

    def extract(self, completion: str) -> str | None:
        return self.prompt_format.extract(completion)

    def difficulty(self, task: Task) -> str | None:
        """More numbers make a harder search: the count labels the task."""
        return f"{len(task['numbers'])} numbers"

    # -- self-verification (the `self_verify` reward) ---------------------------------

    def verification_prompt(self, task: Task, answer: str) -> str:
        """A prompt asking the policy whether `answer` solves `task` (see `prompt_format`)."""
        return self.prompt_format.verification_prompt(task, answer)

    def parse_verification(self, reply: str) -> bool | None:
        """The policy's judgement in a verification reply: True, False, or None if it gave none."""
        return self.prompt_format.parse_verification(reply)

    def check(self, task: Task, answer: str) -> Verdict:
        return check_countdown(
            answer, list(task["numbers"]), task["target"], format_score=self.options.format_score
        )

    def wrong_label(self, task: Task) -> Task:
        """The task with its target moved by 1 to 3 (`label_offset`): a near miss the
        numbers can often still reach, so the wrong label can be learned."""
        target = task["target"] + label_offset(task)
        return Task(task.id, task.prompt, {**task.fields, "target": target})

    def answer_key(self, task: Task, answer: str) -> Hashable:
        if self.options.vote_key == "value":
            value = self.value_of(answer)
            if value is not None:
                return value
        return "".join(answer.split())

    def value_of(self, answer: str) -> Fraction | None:
        """The exact value of an answer, or None if it is not a valid expression."""
        return expression_value(answer)


def _construct(rng: random.Random, numbers: list[int]) -> tuple[int, str] | None:
    """Combine all numbers at random with integer-valued operations; None if stuck."""
    pool = [(n, str(n)) for n in numbers]
    rng.shuffle(pool)
    while len(pool) > 1:
        (a, ea), (b, eb) = pool.pop(), pool.pop()
        if a < b:
            (a, ea), (b, eb) = (b, eb), (a, ea)
        choices = ["+", "-", "*"] + (["/"] if b != 0 and a % b == 0 else [])
        op = rng.choice(choices)
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else 0}[op]
        if op in "+-":
            pool.append((value, f"({ea} {op} {eb})"))
        else:
            pool.append((value, f"{_wrap(ea)} {op} {_wrap(eb)}"))
        rng.shuffle(pool)
    value, expr = pool[0]
    return value, _strip_outer(expr)


def _wrap(expr: str) -> str:
    return expr if " " not in expr or expr.startswith("(") and _strip_outer(expr) != expr else f"({expr})"
