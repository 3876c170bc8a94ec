"""A complete third-party assay environment: sort a list of integers.

Four methods and a schema are all an environment needs; see
docs/define-an-environment.md in the assay repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from assay import Environment, Task, Verdict, seeded_random

_INTEGER_LIST = re.compile(r"^\s*-?\d+(\s*,\s*-?\d+)*\s*$")


@dataclass
class SortingOptions:
    min_length: int = 3  #: shortest list
    max_length: int = 8  #: longest list
    max_value: int = 99  #: values are drawn from [-max_value, max_value]
    descending: bool = False  #: ask for the reverse order


class SortingEnv(Environment):
    name = "sorting"
    description = "Sort a list of integers (example plug-in environment)"
    Options = SortingOptions
    task_schema = {
        "type": "object",
        "required": ["values"],
        "properties": {"values": {"type": "array", "items": {"type": "integer"}, "minItems": 1}},
    }

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
        found = re.findall(r"<answer>(.*?)</answer>", completion, flags=re.DOTALL)
        return found[-1].strip() if found else None

    def check(self, task: Task, answer: str) -> Verdict:
        if not _INTEGER_LIST.match(answer):
            return Verdict.invalid("expected comma-separated integers")
        given = [int(v) for v in answer.split(",")]
        expected = sorted(task["values"], reverse=self.options.descending)
        if given == expected:
            return Verdict.right()
        return Verdict.wrong(f"expected {expected}")
