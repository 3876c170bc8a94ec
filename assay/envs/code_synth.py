"""Procedural programming tasks for the code env (`--set source=synth`).

Each task is a hidden rule from a family, shown through a few examples and checked by
more. The rule is known, so every task is solvable by construction: its `solution`
field holds a reference program, which passes all of its tests.

Families (graded 1-3 by `difficulty`: more parameters, negative values, compositions):
  int:  integer functions from input/output examples, `f(3)=10 f(5)=16 -> 3*x+1`;
  list: list transformations and reductions, `f([1,2])=[2,4] -> [x*2 for x in xs]`;
  str:  string transformations, `f('abc')='cba' -> s[::-1]`;
  io:   small stdin/stdout programs (a line of numbers in, their sum out).

Task fields: the code env's own (`tests` + `entry_point` assert lines, or `io` cases),
plus `family`, `difficulty`, `solution` and `shown`: how many leading cases the prompt
shows (the tests hold more). Literals are written without spaces (`[1,2]`, `'ab'`),
so the compact prompt is the shown examples separated by spaces, then `:`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from assay.envs.base import seeded_random

FAMILIES = ("int", "list", "str", "io")
PROMPT_STYLES = ("full", "compact")
DIFFICULTIES = (1, 2, 3)
#: Cases per task; the prompt shows `SHOWN[difficulty]` of them and the tests check all.
CASES = 8
SHOWN = {1: 3, 2: 4, 3: 5}

PROMPT_IO_FULL = (
    "Write a Python program that reads standard input and writes the expected output. "
    "Answer with the complete program in a single ```python code block.\n\n{examples}"
)
PROMPT_IO_EXAMPLE = "Example input:\n```\n{stdin}```\nExpected output:\n```\n{stdout}```\n"


@dataclass(frozen=True)
class Rule:
    """One kind of hidden program of a family.

    source:  the reference's body with `{a}`, `{b}`, `{c}` parameters: an expression of
             the argument (`x`, `xs`, `s`) for function families, a program for `io`;
    params:  the range each parameter is drawn from (ints), or a string of letters to
             draw one from;
    compute: the rule itself, `compute(argument, **params)`; for `io` it maps the stdin
             text to the stdout text. The tests check that it agrees with `source`.
    """

    family: str
    difficulty: int
    source: str
    params: dict[str, tuple[int, int] | str]
    compute: Callable[..., Any]


_LETTERS = "abcde"

RULES: tuple[Rule, ...] = (
    # -- int: f(x), x an integer ---------------------------------------------------------
    Rule("int", 1, "{a}*x+{b}", {"a": (2, 5), "b": (1, 9)}, lambda x, a, b: a * x + b),
    Rule("int", 1, "x+{a}", {"a": (1, 20)}, lambda x, a: x + a),
    Rule("int", 1, "{a}*x", {"a": (2, 9)}, lambda x, a: a * x),
    Rule("int", 2, "{a}*x+{b}", {"a": (-6, -2), "b": (-9, 9)}, lambda x, a, b: a * x + b),
    Rule("int", 2, "x*x+{a}", {"a": (-9, 9)}, lambda x, a: x * x + a),
    Rule("int", 2, "x//{a}", {"a": (2, 5)}, lambda x, a: x // a),
    Rule("int", 2, "x%{a}", {"a": (2, 7)}, lambda x, a: x % a),
    Rule("int", 3, "{a}*x*x+{b}*x+{c}", {"a": (2, 3), "b": (-5, 5), "c": (-9, 9)},
         lambda x, a, b, c: a * x * x + b * x + c),
    Rule("int", 3, "abs(x-{a})*{b}", {"a": (-5, 5), "b": (2, 4)}, lambda x, a, b: abs(x - a) * b),
    Rule("int", 3, "max(x,{a})+min(x,{b})", {"a": (-3, 3), "b": (-3, 3)},
         lambda x, a, b: max(x, a) + min(x, b)),
    # -- list: f(xs), xs a list of integers ----------------------------------------------
    Rule("list", 1, "[x+{a} for x in xs]", {"a": (1, 9)}, lambda xs, a: [x + a for x in xs]),
    Rule("list", 1, "[x*{a} for x in xs]", {"a": (2, 5)}, lambda xs, a: [x * a for x in xs]),
    Rule("list", 1, "xs[::-1]", {}, lambda xs: xs[::-1]),
    Rule("list", 1, "sum(xs)", {}, lambda xs: sum(xs)),
    Rule("list", 2, "[x for x in xs if x>{a}]", {"a": (-2, 4)}, lambda xs, a: [x for x in xs if x > a]),
    Rule("list", 2, "sorted(xs)", {}, lambda xs: sorted(xs)),
    Rule("list", 2, "[x for x in xs if x%2==0]", {}, lambda xs: [x for x in xs if x % 2 == 0]),
    Rule("list", 2, "sum(xs)*{a}", {"a": (2, 5)}, lambda xs, a: sum(xs) * a),
    Rule("list", 3, "sum(x*x for x in xs)", {}, lambda xs: sum(x * x for x in xs)),
    Rule("list", 3, "[x*{a} for x in xs if x>{b}]", {"a": (2, 4), "b": (-2, 3)},
         lambda xs, a, b: [x * a for x in xs if x > b]),
    Rule("list", 3, "sorted(xs)[::-1]", {}, lambda xs: sorted(xs)[::-1]),
    Rule("list", 3, "len(set(xs))", {}, lambda xs: len(set(xs))),
    # -- str: f(s), s a word of the letters a-e -------------------------------------------
    Rule("str", 1, "s[::-1]", {}, lambda s: s[::-1]),
    Rule("str", 1, "s.upper()", {}, lambda s: s.upper()),
    Rule("str", 1, "s+'{c}'", {"c": "xyz"}, lambda s, c: s + c),
    Rule("str", 2, "s.replace('{c}','{d}')", {"c": "abc", "d": "xyz"}, lambda s, c, d: s.replace(c, d)),
    Rule("str", 2, "s[1:]+s[:1]", {}, lambda s: s[1:] + s[:1]),
    Rule("str", 2, "s.count('{c}')", {"c": "abc"}, lambda s, c: s.count(c)),
    Rule("str", 2, "s*{a}", {"a": (2, 3)}, lambda s, a: s * a),
    Rule("str", 3, "''.join(sorted(s))", {}, lambda s: "".join(sorted(s))),
    Rule("str", 3, "s[::2]", {}, lambda s: s[::2]),
    Rule("str", 3, "''.join(c*2 for c in s)", {}, lambda s: "".join(ch * 2 for ch in s)),
    Rule("str", 3, "'{c}'.join(s)", {"c": "xyz"}, lambda s, c: c.join(s)),
    # -- io: a program from stdin to stdout ----------------------------------------------
    Rule("io", 1, "print(int(input())*{a}+{b})", {"a": (2, 5), "b": (0, 9)},
         lambda text, a, b: f"{int(text) * a + b}\n"),
    Rule("io", 1, "print(input()[::-1])", {}, lambda text: text.rstrip("\n")[::-1] + "\n"),
    Rule("io", 2, "print(sum(map(int,input().split())))", {},
         lambda text: f"{sum(map(int, text.split()))}\n"),
    Rule("io", 2, "print(max(map(int,input().split())))", {},
         lambda text: f"{max(map(int, text.split()))}\n"),
    Rule("io", 3, "print(*sorted(map(int,input().split())))", {},
         lambda text: " ".join(map(str, sorted(map(int, text.split())))) + "\n"),
    Rule("io", 3, "n=int(input())\nprint(sum(int(input()) for _ in range(n)))", {},
         lambda text: f"{sum(map(int, text.split()[1:]))}\n"),
)

#: The argument's name in each function family's `def f(...)`.
ARGUMENT = {"int": "x", "list": "xs", "str": "s"}


def literal(value: Any) -> str:
    """A Python literal without spaces: `3`, `-2`, `[1,-2]`, `'ab'`."""
    if isinstance(value, list):
        return "[" + ",".join(literal(item) for item in value) + "]"
    return repr(value)


def make_input(rule: Rule, rng: random.Random) -> Any:
    """One argument (or stdin text, for `io`) for `rule`, wider at higher difficulty."""
    low = 0 if rule.difficulty == 1 else -9
    if rule.family == "int":
        return rng.randint(low, 12)
    if rule.family == "list":
        return [rng.randint(low, 9) for _ in range(rng.randint(rule.difficulty == 1, 5))]
    if rule.family == "str":
        return "".join(rng.choice(_LETTERS) for _ in range(rng.randint(1, 6)))
    numbers = [rng.randint(low, 20) for _ in range(rng.randint(2, 5))]
    if "int(input())" in rule.source and "range(n)" in rule.source:  # a count, then lines
        return f"{len(numbers)}\n" + "".join(f"{n}\n" for n in numbers)
    if "int(input())" in rule.source:  # one number
        return f"{numbers[0]}\n"
    if "split()" in rule.source:  # a line of numbers
        return " ".join(map(str, numbers)) + "\n"
    return "".join(rng.choice(_LETTERS) for _ in range(rng.randint(1, 6))) + "\n"


def draw_params(rule: Rule, rng: random.Random) -> dict[str, Any]:
    """The rule's parameters: an int from each range, a letter from each string."""
    return {
        name: rng.choice(spec) if isinstance(spec, str) else rng.randint(*spec)
        for name, spec in rule.params.items()
    }


def reference(rule: Rule, params: dict[str, Any]) -> str:
    """The reference solution's source: `def f(x): return 3*x+1`, or the io program."""
    body = rule.source.format(**params).replace("+-", "-").replace("--", "+")  # `x+-3`: `x-3`
    if rule.family == "io":
        return body
    return f"def f({ARGUMENT[rule.family]}): return {body}"


def make_fields(rule: Rule, rng: random.Random) -> dict[str, Any] | None:
    """A task's fields for one draw of `rule`, or None when its shown examples cannot tell
    the rule from a constant (they all have the same output): the caller draws again."""
    params = draw_params(rule, rng)
    inputs: list[Any] = []
    for _ in range(CASES * 20):  # distinct inputs; a few tries suffice in practice
        value = make_input(rule, rng)
        if value not in inputs:
            inputs.append(value)
        if len(inputs) == CASES:
            break
    outputs = [rule.compute(value, **params) for value in inputs]
    shown = SHOWN[rule.difficulty]
    # The shown examples must not all agree either (`f([1])=[] f([])=[]` teaches nothing).
    if len(inputs) < CASES or len({literal(out) for out in outputs[:shown]}) < 2:
        return None
    fields: dict[str, Any] = {
        "family": rule.family,
        "difficulty": rule.difficulty,
        "shown": shown,
        "solution": reference(rule, params),
    }
    if rule.family == "io":
        fields["io"] = [{"stdin": i, "stdout": o} for i, o in zip(inputs, outputs, strict=True)]
    else:
        fields["entry_point"] = "f"
        fields["tests"] = "".join(
            f"assert f({literal(i)}) == {literal(o)}\n" for i, o in zip(inputs, outputs, strict=True)
        )
    return fields


def synth_fields(
    n: int,
    seed: int,
    families: Sequence[str] = FAMILIES,
    min_difficulty: int = 1,
    max_difficulty: int = 3,
) -> list[dict[str, Any]]:
    """`n` tasks' fields: families in turn, a difficulty drawn from the range, then a rule
    of that family and difficulty. The same arguments always give the same tasks."""
    rng = seeded_random(seed)
    tasks = []
    for i in range(n):
        family = families[i % len(families)]
        difficulty = rng.randint(min_difficulty, max_difficulty)
        rules = [r for r in RULES if r.family == family and r.difficulty == difficulty]
        fields = None
        while fields is None:
            fields = make_fields(rng.choice(rules), rng)
        tasks.append(fields)
    return tasks


def shown_examples(fields: dict[str, Any]) -> list[str]:
    """The cases the prompt shows, compactly: `f(3)=10`, or `"3\\n"="10\\n"` for io."""
    shown = fields["shown"]
    if "io" in fields:
        return [f"{json.dumps(c['stdin'])}={json.dumps(c['stdout'])}" for c in fields["io"][:shown]]
    lines = [line for line in fields["tests"].splitlines() if line.startswith("assert ")]
    return [line[len("assert "):].replace(" == ", "=", 1) for line in lines[:shown]]


def render_synth_prompt(fields: dict[str, Any], style: str, prompt_tests: str) -> str:
    """The prompt of a task with `shown`: compact (`f(3)=10 f(5)=16 f(0)=1:`) or full
    (`prompt_tests`, the code env's instructions, over the shown asserts)."""
    if style == "compact":
        return " ".join(shown_examples(fields)) + ":"
    shown = fields["shown"]
    if "io" in fields:
        examples = "".join(
            PROMPT_IO_EXAMPLE.format(stdin=case["stdin"], stdout=case["stdout"])
            for case in fields["io"][:shown]
        )
        return PROMPT_IO_FULL.format(examples=examples)
    lines = [line for line in fields["tests"].splitlines() if line.startswith("assert ")]
    return prompt_tests.format(entry_point=fields["entry_point"], tests="\n".join(lines[:shown]))


def shown_problem(fields: dict[str, Any]) -> str | None:
    """Why a task's `shown` does not fit its cases (the prompt must hide some), or None."""
    if "shown" not in fields:
        return None
    if "io" in fields:
        total = len(fields["io"])
    else:
        tests = fields.get("tests") or ""
        total = sum(line.startswith("assert ") for line in tests.splitlines())
    if fields["shown"] > total:
        return f"shown: {fields['shown']} examples, but the task has only {total} cases"
    return None
