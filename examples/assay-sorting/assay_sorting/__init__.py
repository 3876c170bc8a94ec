"""A complete third-party assay environment: sort a list of integers.

Four methods and a schema are all an environment needs; see
docs/define-an-environment.md in the assay repository. The rest is optional: how an answer
is written (`answer_template`), a right answer and known wrong ones for `assay audit`
(`audit_reference`, `audit_probes`); an env whose lab runs need an option set
(countdown's votes compare values) says so in `lab_options`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from assay import Environment, Task, Verdict, seeded_random
from assay.verifiers.reasoning import outside_reasoning

#: the longest number read (Python's int() refuses text of over 4,300 digits)
MAX_DIGITS = 4_000
_INTEGER_LIST = re.compile(r"^\s*-?\d+(\s*,\s*-?\d+)*\s*$")


@dataclass
class SortingOptions:
    min_length: int = 3  #: shortest list
    max_length: int = 8  #: longest list
    max_value: int = 99  #: values are drawn from [-max_value, max_value]
    descending: bool = False  #: ask for the reverse order

    def __post_init__(self) -> None:
        # a ValueError here is what `--set` reports, in one line naming the env
        if self.min_length < 1:
            raise ValueError(f"min_length must be at least 1, got {self.min_length}")
        if self.min_length > self.max_length:
            raise ValueError(
                f"min_length ({self.min_length}) must not exceed max_length ({self.max_length})"
            )
        if self.max_value < 0:
            raise ValueError(
                f"max_value must be at least 0 (values are drawn from [-max_value, max_value]), "
                f"got {self.max_value}"
            )


class SortingEnv(Environment):
    name = "sorting"
    description = "Sort a list of integers (example plug-in environment)"
    Options = SortingOptions
    task_schema = {
        "type": "object",
        "required": ["values"],
        "properties": {"values": {"type": "array", "items": {"type": "integer"}, "minItems": 1}},
    }
    answer_template = "<answer>{}</answer>"  # how an answer is written (assay audit)

    def generate(self, n: int, seed: int = 0) -> list[Task]:
        rng, o = seeded_random(seed), self.options
        tasks = []
        for i in range(n):
            length = rng.randint(o.min_length, o.max_length)
            values = [rng.randint(-o.max_value, o.max_value) for _ in range(length)]
            tasks.append(self.make_task({"values": values}, id=f"sorting-{seed}-{i}"))
        return tasks

    def render_prompt(self, task: Task) -> str:
        order = "descending" if self.options.descending else "ascending"
        return (
            f"Sort these numbers in {order} order: {', '.join(map(str, task['values']))}. "
            "Give the sorted list, comma-separated, in <answer> </answer> tags."
        )

    def extract(self, completion: str) -> str | None:
        # an answer inside <think>...</think> is a draft: only what is outside counts
        found = re.findall(r"<answer>(.*?)</answer>", outside_reasoning(completion), flags=re.DOTALL)
        return found[-1].strip() if found else None

    def check(self, task: Task, answer: str) -> Verdict:
        if not _INTEGER_LIST.match(answer):
            return Verdict.invalid("expected comma-separated integers")
        parts = answer.split(",")
        if any(len(v.strip()) > MAX_DIGITS for v in parts):  # int() of longer raises: refuse first
            return Verdict.invalid(f"a number longer than {MAX_DIGITS} digits")
        given = [int(v) for v in parts]
        expected = sorted(task["values"], reverse=self.options.descending)
        if given == expected:
            return Verdict.right()
        return Verdict.wrong(f"expected {expected}")

    def _sorted(self, task: Task) -> list[int]:
        return sorted(task.fields.get("values", []), reverse=self.options.descending)

    def audit_reference(self, task: Task) -> str | None:
        """A right answer, for `assay audit sorting`."""
        return ", ".join(map(str, self._sorted(task))) if task.fields.get("values") else None

    def audit_probes(self, task: Task, reference: str | None) -> dict[str, list[str]]:
        """Wrong answers a lax checker would pass: the list as given (when it is not
        already in order) and the right list with one value dropped."""
        values, right = task.fields.get("values", []), self._sorted(task)
        wrap = self.answer_template.format
        return {
            "unsorted": [wrap(", ".join(map(str, values)))] if values != right else [],
            "one_dropped": [wrap(", ".join(map(str, right[1:])))] if len(right) > 1 else [],
        }
