"""Math: procedural problems and task-file problems, answered in `\\boxed{}`.

Two kinds of task:
- gold-answer tasks `{"answer": str, "problem": str, "form": ...}`: the answer is
  checked for mathematical equivalence (`assay.verifiers.math`); `form` may also
  require a plain number or an expanded polynomial, so that copying the question
  (`\\frac{3}{4} + \\frac{5}{6}`) does not pass for its value;
- label-free equation tasks `{"equation": str, "variable": str}`: no gold; the
  answer is substituted back into the equation (`assay.verifiers.equation`).

Generators (`--set kinds=...`): `arithmetic` (integers), `fraction`, `linear` and
`quadratic` (equation tasks), `simplify` (expand a product, square or quotient).
Every check runs under the hard `time_limit` in a worker process.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from assay.envs import math_probes
from assay.envs.base import Environment, Task, label_offset, seeded_random
from assay.envs.tools import PythonTool, ToolOptions
from assay.verifiers import Failure, Verdict
from assay.verifiers.equation import DOMAINS, EquationError, check_equation
from assay.verifiers.latex_answer import final_answers, last_number, plain_text_key
from assay.verifiers.math import FORMS, check_math, warm_up
from assay.verifiers.math import answer_key as math_answer_key

KINDS = ("arithmetic", "fraction", "linear", "quadratic", "simplify")
ANSWER_FORMATS = ("boxed", "last_number")
ANSWER_INSTRUCTION = "Put your final answer in \\boxed{}."
EQUATION_INSTRUCTION = (
    "Put the solution in \\boxed{}; if there are several, list them all, separated "
    "by commas, in one \\boxed{}."
)


@dataclass
class MathOptions(ToolOptions):
    """Knobs of the math generators and verifier (`--set KEY=VALUE`); the Python tool's
    (`tools`, `max_turns`, ...: assay/envs/tools.py) come first."""

    kinds: tuple[str, ...] = KINDS  #: generators to draw from, in turn
    max_operand: int = 30  #: largest integer operand in arithmetic problems
    max_terms: int = 4  #: most operands in an arithmetic or fraction problem
    max_denominator: int = 12  #: largest denominator in fraction problems
    max_root: int = 9  #: solutions of equations lie in [-max_root, max_root]
    time_limit: float = 5.0  #: seconds per verification before it is a `timeout`
    #: where the answer is read: "boxed" (every \\boxed{} or <answer>, the last one counts and
    #: hedging is caught) or "last_number" (the last number of the text, for models too
    #: small to box their answer; it cannot see hedging)
    answer_format: str = "boxed"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(
                f"answer_format must be one of {', '.join(ANSWER_FORMATS)}; got {self.answer_format!r}"
            )
        self.kinds = tuple(self.kinds)
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown or not self.kinds:
            raise ValueError(
                f"kinds must be a non-empty subset of {', '.join(KINDS)}; got {unknown or 'none'}"
            )
        if (
            self.max_operand < 2
            or self.max_terms < 2
            or self.max_denominator < 2
            or self.max_root < 1
        ):
            raise ValueError(
                "need max_operand >= 2, max_terms >= 2, max_denominator >= 2, max_root >= 1"
            )
        too_large = (
            self.max_operand > 10**6
            or self.max_terms > 10
            or self.max_denominator > 1000
            or self.max_root > 1000
        )
        if too_large:
            # the generators list candidates up to these bounds; larger makes no sensible task
            raise ValueError(
                "need max_operand <= 1000000, max_terms <= 10, max_denominator <= 1000, max_root <= 1000"
            )
        if not (math.isfinite(self.time_limit) and 0 < self.time_limit <= 3600):
            raise ValueError(f"time_limit must be a number of seconds in (0, 3600], got {self.time_limit!r}")


class MathEnv(PythonTool, Environment):
    """Math problems with a gold answer, or equations checked by substitution."""

    name = "math"
    answer_template = "\\boxed{{{}}}"
    answer_field = "answer"
    probes = math_probes.PROBES  # its reward hacks for `assay audit`
    description = (
        "Arithmetic, fractions, equations (label-free), simplification, task files; \\boxed{}"
    )
    Options = MathOptions
    task_schema = {
        "type": "object",
        "properties": {
            "id": {"type": ["string", "integer"]},
            "prompt": {"type": "string"},
            "problem": {"type": "string"},
            "answer": {"type": ["string", "number"], "minLength": 1},
            "form": {"enum": list(FORMS)},
            "equation": {"type": "string", "pattern": "="},
            "variable": {"type": "string", "pattern": "^[A-Za-z]$"},
            "domain": {"enum": list(DOMAINS)},
            "kind": {"type": "string"},
            "solution": {"type": "string"},
        },
        # A task has a gold `answer` or an `equation` (label-free), never both.
        "if": {"required": ["equation"]},
        "then": {"properties": {"answer": False}},
        "else": {"required": ["answer"]},
    }

    def __init__(self, /, **options: Any) -> None:
        super().__init__(**options)
        self.time_limit = self.options.time_limit

    # -- making tasks ---------------------------------------------------------------

    def generate(self, n: int, seed: int = 0) -> list[Task]:
        rng = seeded_random(seed)
        kinds = self.options.kinds
        tasks = []
        for i in range(n):
            kind = kinds[i % len(kinds)]
            fields = _GENERATORS[kind](rng, self.options)
            tasks.append(self.make_task({"kind": kind, **fields}, id=f"math-{seed}-{i}"))
        return tasks

    def render_prompt(self, task: Task) -> str:
        if "equation" in task.fields:
            variable = task.get("variable", "x")
            prompt = f"Solve for ${variable}$: ${task['equation']}$.\n\n{EQUATION_INSTRUCTION}"
        else:
            problem = task.get("problem")
            prompt = f"{problem}\n\n{ANSWER_INSTRUCTION}" if problem else ANSWER_INSTRUCTION
        return self.tool_prompt(prompt)

    # -- verifying ------------------------------------------------------------------

    def final_answers(self, completion: str) -> list[str]:
        """Every final answer of a completion, in order (the last counts)."""
        if self.options.answer_format == "last_number":
            number = last_number(completion)
            return [] if number is None else [number]
        return final_answers(completion)

    def extract(self, completion: str) -> str | None:
        answers = self.final_answers(completion)
        return answers[-1] if answers else None

    def check(self, task: Task, answer: str) -> Verdict:
        return self._check_answers(task, [answer])

    def check_completion(self, task: Task, completion: str) -> Verdict:
        """Check every final answer of the completion (hedging is visible only then)."""
        try:
            answers = self.final_answers(completion)
            if not answers and self.options.answer_format == "last_number":
                return Verdict.invalid("no number in the completion")
            return self._check_answers(task, answers)
        except EquationError as exc:
            return Verdict.error(f"task {task.id}: {exc}"[:500])
        except Exception as exc:
            return Verdict.error(f"verifier raised {type(exc).__name__}: {exc}"[:500])

    def _check_answers(self, task: Task, answers: Sequence[str]) -> Verdict:
        if "equation" in task.fields:
            return check_equation(
                answers,
                str(task["equation"]),
                str(task.get("variable", "x")),
                domain=str(task.get("domain", "real")),
            )
        return check_math(answers, _gold_text(task["answer"]), form=task.get("form"))

    def verify_batch(
        self,
        pairs: Sequence[tuple[Task, str]],
        *,
        workers: int | None = None,
        on_result: Callable[[int, Verdict], None] | None = None,
    ) -> list[Verdict]:
        warm_up()  # before the workers fork, so that a fresh worker starts warm
        return super().verify_batch(pairs, workers=workers, on_result=on_result)

    def wrong_label(self, task: Task) -> Task:
        """The task with its gold answer moved by 1 to 3 (`label_offset`): a number
        becomes another number, an expression `(answer) + k`. An equation task (no gold
        answer) cannot be given a wrong one: ValueError."""
        if "answer" not in task.fields:
            raise ValueError(f"task {task.id}: an equation task has no label to make wrong")
        gold, k = task["answer"], label_offset(task)
        if isinstance(gold, (int, float)) and not isinstance(gold, bool):
            wrong: Any = gold + k
        else:
            text = _gold_text(gold)
            try:
                wrong = str(Fraction(text.replace(" ", "")) + k)
            except (ValueError, ZeroDivisionError):
                wrong = f"({text}) + {k}" if k > 0 else f"({text}) - {-k}"
        return Task(task.id, task.prompt, {**task.fields, "answer": wrong})

    def answer_key(self, task: Task, answer: str) -> Hashable:
        """Equivalent answers share a key (`0.5`, `\\frac12`, `x = 1/2`); computed under
        the time limit, falling back to the whitespace-free text. In the env's verification
        workers: a worker of its own, forked at the first vote, would keep a copy of every
        page training writes from then on (with SmolLM2, gigabytes)."""
        warm_up()  # before its worker forks
        pool = self._pool(self._started_workers())
        (key,) = pool.map(math_answer_key, [(answer,)], timeout=self.time_limit)
        return ("text", plain_text_key(answer)) if isinstance(key, Failure) else key


def _gold_text(answer: Any) -> str:
    """A gold answer as LaTeX; JSON numbers are written out in full (1e-07 -> 0.0000001)."""
    if isinstance(answer, float):
        return format(Decimal(repr(answer)), "f")
    return str(answer)


# -- generators: each returns the task fields ---------------------------------------

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_LATEX_OP = {"+": "+", "-": "-", "*": "\\times", "/": "\\div"}


def _combine(
    rng: random.Random, atoms: list[tuple[Fraction, str]], ops: str
) -> tuple[Fraction, str]:
    """Join atoms with random operators into one expression: (exact value, LaTeX)."""
    items = [(value, text, 3) for value, text in atoms]  # (value, latex, precedence)
    while len(items) > 1:
        right = items.pop(rng.randrange(len(items)))
        left = items.pop(rng.randrange(len(items)))
        op = rng.choice([o for o in ops if not (o == "/" and right[0] == 0)])
        prec = _PRECEDENCE[op]
        left_text = left[1] if left[2] >= prec else f"\\left({left[1]}\\right)"
        needs_parens = right[2] < prec or (right[2] == prec and op in "-/")
        right_text = f"\\left({right[1]}\\right)" if needs_parens else right[1]
        value = {"+": left[0] + right[0], "-": left[0] - right[0], "*": left[0] * right[0]}.get(
            op, left[0] / right[0] if right[0] else Fraction(0)
        )
        items.append((value, f"{left_text} {_LATEX_OP[op]} {right_text}", prec))
    return items[0][0], items[0][1]


def _fraction_latex(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def _arithmetic(rng: random.Random, o: MathOptions) -> dict[str, Any]:
    count = rng.randint(2, o.max_terms)
    atoms = [(Fraction(v), str(v)) for v in (rng.randint(1, o.max_operand) for _ in range(count))]
    value, text = _combine(rng, atoms, "+-*")
    return {"problem": f"Compute ${text}$.", "answer": str(value.numerator), "form": "number"}


def _fraction(rng: random.Random, o: MathOptions) -> dict[str, Any]:
    count = rng.randint(2, min(3, o.max_terms))
    atoms = []
    for _ in range(count):
        q = rng.randint(2, o.max_denominator)
        p = rng.choice([v for v in range(1, 2 * q) if v % q])
        atoms.append((Fraction(p, q), f"\\frac{{{p}}}{{{q}}}"))
    value, text = _combine(rng, atoms, "+-*/")
    return {
        "problem": f"Compute ${text}$. Give the answer as a fraction in lowest terms.",
        "answer": _fraction_latex(value),
        "form": "fraction",
    }


def _polynomial(coefficients: Sequence[int], variable: str = "x") -> str:
    """LaTeX of a polynomial from its coefficients, highest degree first: 2x^2 - 7x + 3."""
    degree = len(coefficients) - 1
    parts: list[str] = []
    for power, c in zip(range(degree, -1, -1), coefficients, strict=True):
        if c == 0:
            continue
        magnitude = abs(c)
        body = {0: str(magnitude), 1: variable}.get(power, f"{variable}^{power}")
        if power > 0 and magnitude != 1:
            body = f"{magnitude}{body}"
        sign = ("-" if c < 0 else "") if not parts else (" - " if c < 0 else " + ")
        parts.append(sign + body)
    return "".join(parts) or "0"


def _nonzero(rng: random.Random, bound: int) -> int:
    return rng.choice([v for v in range(-bound, bound + 1) if v != 0])


def _linear(rng: random.Random, o: MathOptions) -> dict[str, Any]:
    solution = rng.randint(-o.max_root, o.max_root)
    a = _nonzero(rng, 9)
    c = rng.choice([0, 0] + [v for v in range(-9, 10) if v not in (0, a)])
    b = rng.randint(-20, 20)
    d = (a - c) * solution + b  # a*s + b = c*s + d
    equation = f"{_polynomial([a, b])} = {_polynomial([c, d])}"
    return {"equation": equation, "variable": "x", "solution": str(solution)}


def _quadratic(rng: random.Random, o: MathOptions) -> dict[str, Any]:
    r = rng.randint(-o.max_root, o.max_root)
    if rng.random() < 0.3:  # a rational root p/q: (q x - p)(x - r)
        q = rng.randint(2, 5)
        p = rng.choice([v for v in range(-o.max_root * q, o.max_root * q + 1) if v % q])
        coefficients = [q, -(q * r + p), p * r]
        roots = {Fraction(p, q), Fraction(r)}
    else:  # k (x - r)(x - s), a double root now and then
        s = r if rng.random() < 0.1 else rng.randint(-o.max_root, o.max_root)
        k = rng.choice([1, 1, 1, 2, 3, -1])
        coefficients = [k, -k * (r + s), k * r * s]
        roots = {Fraction(r), Fraction(s)}
    solution = ", ".join(_fraction_latex(v) for v in sorted(roots))
    return {"equation": f"{_polynomial(coefficients)} = 0", "variable": "x", "solution": solution}


def _simplify(rng: random.Random, o: MathOptions) -> dict[str, Any]:
    a, b = _nonzero(rng, o.max_root), _nonzero(rng, o.max_root)
    template = rng.randrange(4)
    if template == 0:  # (x + a)(x + b)
        text = f"\\left({_polynomial([1, a])}\\right)\\left({_polynomial([1, b])}\\right)"
        answer = _polynomial([1, a + b, a * b])
        problem = f"Expand and simplify ${text}$."
    elif template == 1:  # (k x + a)^2
        k = rng.randint(2, 5)
        text = f"\\left({_polynomial([k, a])}\\right)^2"
        answer = _polynomial([k * k, 2 * k * a, a * a])
        problem = f"Expand and simplify ${text}$."
    elif template == 2:  # (x^2 + (a+b) x + ab) / (x + a)
        text = f"\\frac{{{_polynomial([1, a + b, a * b])}}}{{{_polynomial([1, a])}}}"
        answer = _polynomial([1, b])
        problem = f"Simplify ${text}$ (for $x \\neq {-a}$)."
    else:  # collect like terms
        c, d = _nonzero(rng, 9), rng.randint(-20, 20)
        text = f"{_polynomial([a, d])} + {_polynomial([c, b])}".replace("+ -", "- ")
        answer = _polynomial([a + c, b + d])
        problem = f"Simplify ${text}$."
    return {"problem": problem, "answer": answer, "form": "expanded"}


_GENERATORS: dict[str, Callable[[random.Random, MathOptions], dict[str, Any]]] = {
    "arithmetic": _arithmetic,
    "fraction": _fraction,
    "linear": _linear,
    "quadratic": _quadratic,
    "simplify": _simplify,
}
