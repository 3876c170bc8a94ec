"""Label-free checking of equation answers: substitute the answer back into the equation.

A task is an equation in one unknown (`"2x + 3 = 11"`, unknown `x`) and no gold
answer. An answer is correct when every value it gives satisfies the equation
exactly and, for a polynomial equation, it gives all of the distinct solutions
(real ones by default; complex ones with `domain="complex"`). A quadratic with two
roots therefore needs both; a double root is one solution. A non-polynomial
equation (say `\\sin(x) = 0`) needs at least one value, and every value given must
satisfy it.

Answers may be written `3`, `x = 3`, `2, 3`, `x = 2 \\text{ or } x = 3`, `\\{2, 3\\}`,
or spread over several boxes (pooled: every boxed value must satisfy the equation,
so hedging with a wrong value fails). Decimals count by their exact value (`0.5` is
1/2); a rounded irrational root is not a root. In the complex domain `i` is the
imaginary unit. Where there is no solution, `\\emptyset`
is the answer.

The model's answer is parsed by math-verify's LaTeX reader (never `sympify`); the
equation, written by the task's author, is parsed by the same reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sympy

from assay.verifiers.latex_answer import clean_answer
from assay.verifiers.math import (
    Answer,
    answer_texts,
    exact_decimals,
    parse_answer,
    too_large,
)
from assay.verifiers.verdict import Verdict

DOMAINS = ("real", "complex")


class EquationError(ValueError):
    """The task's equation (not the model's answer) is unusable; the message says why."""


def read_equation(equation: str, variable: str) -> tuple[sympy.Expr, sympy.Symbol]:
    """`lhs - rhs` of an equation and its unknown. Raises `EquationError` when it is not
    an equation in `variable`."""
    parsed = parse_answer(equation)
    if not isinstance(parsed, sympy.Eq):
        raise EquationError(f"equation {equation!r} does not parse as one equation (got {parsed})")
    unknowns = [s for s in parsed.free_symbols if s.name == variable]
    if not unknowns:
        raise EquationError(f"equation {equation!r} does not contain the variable {variable!r}")
    others = sorted(s.name for s in parsed.free_symbols if s.name != variable)
    if others:
        raise EquationError(f"equation {equation!r} has unknowns besides {variable!r}: {others}")
    return parsed.lhs - parsed.rhs, unknowns[0]


def solution_count(expr: sympy.Expr, unknown: sympy.Symbol, domain: str) -> int | None:
    """How many distinct solutions `expr = 0` has, or None when it is not a polynomial."""
    try:
        poly = sympy.Poly(expr, unknown)
    except sympy.PolynomialError:
        return None
    if poly.free_symbols - {unknown} or poly.degree() < 1:
        return None
    square_free = sympy.Poly(sympy.sqf_part(poly.as_expr()), unknown)
    return square_free.degree() if domain == "complex" else square_free.count_roots()


def _values(answer: Answer, unknown: sympy.Symbol, domain: str) -> list[Any] | str:
    """The values an answer gives for `unknown`, or why it gives none that can be checked."""
    value = answer.value
    if value is None:
        return f"could not parse {answer.shown!r}"
    if isinstance(value, sympy.Eq) and isinstance(value.rhs, sympy.FiniteSet):  # x = \pm 2
        if not (isinstance(value.lhs, sympy.Symbol) and value.lhs.name == unknown.name):
            return f"{answer.shown!r} does not give a value of {unknown.name}"
        value = value.rhs
    members = value.args if isinstance(value, (sympy.FiniteSet, sympy.Tuple)) else (value,)
    if value == sympy.S.EmptySet:
        members = ()
    found = []
    for member in members:
        if isinstance(member, sympy.Eq):
            if not (isinstance(member.lhs, sympy.Symbol) and member.lhs.name == unknown.name):
                return f"{answer.shown!r} does not give a value of {unknown.name}"
            member = member.rhs
        if domain == "complex":  # there, `i` is the imaginary unit (the parser reads 2i as 2*i)
            member = member.xreplace({s: sympy.I for s in member.free_symbols if s.name == "i"})
        if not isinstance(member, sympy.Expr) or member.free_symbols:
            return f"{answer.shown!r} is not a number"
        if too_large(member):
            return f"{answer.shown!r} is too large to substitute"
        # A decimal counts by its exact value (0.5 is 1/2), never as an approximation.
        member = exact_decimals(member)
        found.append(member)
    return found


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_zero(expr: sympy.Expr) -> bool:
    zero = expr.is_zero
    if zero is None:
        zero = sympy.simplify(expr).is_zero
    if zero is None:  # simplify could not decide: 50 digits with a far tighter tolerance
        value = sympy.N(expr, 50)
        zero = value.is_number and abs(complex(value)) < 1e-40
    return bool(zero)


def check_equation(
    answers: Sequence[str], equation: str, variable: str = "x", *, domain: str = "real"
) -> Verdict:
    """Verdict for a completion's final answers to `equation`, by substitution (no gold).

    Raises `EquationError` when the equation itself is unusable (a task problem).
    """
    if domain not in DOMAINS:
        raise EquationError(f"domain must be one of {DOMAINS}, got {domain!r}")
    expr, unknown = read_equation(equation, variable)
    texts = answer_texts(answers)
    if isinstance(texts, Verdict):
        return texts

    values: list[Any] = []
    said_empty = False
    for text in texts:
        answer = Answer.read(text)
        if answer.refused:
            return Verdict.invalid(f"{answer.refused}: {answer.shown!r}")
        found = _values(answer, unknown, domain)
        if isinstance(found, str):
            return Verdict.wrong(found)
        said_empty |= not found
        for value in found:
            if not any(_is_zero(value - kept) for kept in values):
                values.append(value)

    for value in values:
        if domain == "real" and value.is_real is False:
            return Verdict.wrong(f"{variable} = {_short(value)} is not real")
        if not _is_zero(expr.xreplace({unknown: value})):
            return Verdict.wrong(
                f"{variable} = {_short(value)} does not satisfy {clean_answer(equation)}"
            )

    count = solution_count(expr, unknown, domain)
    if count is None:  # not a polynomial: any solution will do, but every value must be one
        if not values:
            return Verdict.wrong("no value given")
        return Verdict.right(f"{len(values)} value(s) satisfy the equation")
    if len(values) < count:
        return Verdict.wrong(f"gives {len(values)} of the {count} solutions")
    if count == 0 and not said_empty:
        return Verdict.wrong("no value given")
    if count == 0:
        return Verdict.right(f"no {domain} solutions")
    shown = _short(", ".join(str(v) for v in values))
    return Verdict.right(f"{variable} = {shown} satisfies the equation ({count} solution(s))")
