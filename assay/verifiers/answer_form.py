"""Answer forms: what a task's `form` requires of an answer beyond being equivalent.

Equivalence alone lets an answer copy the question: `\\frac{3}{6}` *equals* the answer
to "write 3/6 in lowest terms", and `(x+1)^2` equals the answer to "expand (x+1)^2".
A form names the shape the answer must have. The checks read the answer's text as
written: the parser evaluates as it reads (`\\frac{3}{6}` parses as 1/2), so the
parsed value no longer shows whether the answer was reduced. The parsed value is used
where structure survives parsing (products and powers of sums).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import sympy

from assay.verifiers.exact_value import exact_rational, too_large
from assay.verifiers.latex_answer import plain_text_key

#: What the `form` task field may require of the final answer, beyond being equivalent.
FORMS = {
    "number": "a single number (an integer, a fraction in lowest terms or a decimal), not an expression",
    "fraction": "an integer or a fraction in lowest terms (no decimal)",
    "simplified": (
        "simplified: every fraction of integers in lowest terms (none inside another), "
        "every root of an integer free of perfect powers"
    ),
    "expanded": (
        "an expanded polynomial (no products of sums, no division by a polynomial, like "
        "terms collected, fractions in lowest terms)"
    ),
}

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d+)?|\d+/\d+|\\frac\{-?\d+\}\{\d+\}|\\frac\d\d)")
_FRACTION = re.compile(r"[-+]?(?:\d+|\d+/\d+|\\frac\{-?\d+\}\{\d+\}|\\frac\d\d)")
_FRAC = re.compile(r"\\[dt]?frac(?![a-zA-Z])")
_ROOT = re.compile(r"\\sqrt(?![a-zA-Z])")
_SLASH_OPERAND = r"(\d+!?|\([^()]*\)|\{[^{}]*\})"
_SLASH = re.compile(_SLASH_OPERAND + r"\s*/\s*" + _SLASH_OPERAND)
#: Integers with more bits than this are not checked for common factors (never in a task).
_MAX_BITS = 1 << 16


#: Operators whose presence means the answer still poses the question instead of answering it.
_UNEVALUATED = re.compile(
    r"\\(?:[io]+int|int|sum|prod|lim)(?![a-zA-Z])|\\[dt]?frac\{(?:\\mathrm\{)?d\}?\}\{(?:\\mathrm\{)?d"
)


def unevaluated(text: str) -> str | None:
    """The first unevaluated operator in an answer (`\\int`, `\\sum`, `\\prod`, `\\lim`,
    `\\frac{d}{dx}`), or None: equivalent to the value, but the question copied back."""
    match = _UNEVALUATED.search(text)
    if match is None:
        return None
    op = match.group(0)
    return "a derivative" if "frac" in op else op


def form_problem(text: str, value: Any, form: str, *, parse: Callable[[str], Any]) -> str | None:
    """Why an equivalent answer (`text`, parsed as `value`) is not in `form`, or None.

    `parse` turns LaTeX into a sympy value (the math verifier's cached parser): parts of
    the answer, such as a fraction's numerator, are read with it.
    """
    if form not in FORMS:
        raise ValueError(f"unknown answer form {form!r} (known: {', '.join(FORMS)})")
    compact = plain_text_key(text)
    if form in ("number", "fraction"):
        pattern = _NUMBER if form == "number" else _FRACTION
        if not pattern.fullmatch(compact):
            return f"not {FORMS[form]}"
        if re.match(r"[-+]\\frac\{-", compact):
            return "not in lowest terms (two signs)"
        return _fraction_problem(compact, parse, nested_ok=False)
    if form == "simplified":
        return _fraction_problem(compact, parse, nested_ok=False) or _root_problem(compact, parse)
    return _expanded_problem(compact, value) or _fraction_problem(compact, parse, nested_ok=True)


# -- fractions ------------------------------------------------------------------------


def _fractions(text: str) -> Iterator[tuple[str, str]]:
    """(numerator, denominator) texts of every `\\frac{a}{b}` (`\\frac12` too) and `a/b`."""
    for match in _FRAC.finditer(text):
        first = _argument(text, match.end())
        if first is None:
            continue
        second = _argument(text, first[1])
        if second is not None:
            yield first[0], second[0]
    for match in _SLASH.finditer(text):
        yield _unwrap(match.group(1)), _unwrap(match.group(2))


def _argument(text: str, start: int) -> tuple[str, int] | None:
    """A LaTeX macro argument at `start`: a braced group or one character; (body, end)."""
    while start < len(text) and text[start] == " ":
        start += 1
    if start >= len(text):
        return None
    if text[start] != "{":
        return text[start], start + 1
    depth = 0
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start + 1 : index], index + 1
    return None


def _unwrap(operand: str) -> str:
    return operand[1:-1] if operand[:1] in "({" else operand


def _integer(text: str, parse: Callable[[str], Any]) -> int | None:
    """The exact integer a piece of LaTeX spells (`2005!`, `12`), or None."""
    try:
        value = parse(text)
        if value is None or too_large(value):
            return None
        exact = exact_rational(value)
    except (RecursionError, ValueError, TypeError, ArithmeticError):
        return None
    if exact is None or exact.denominator != 1 or abs(exact.numerator).bit_length() > _MAX_BITS:
        return None
    return exact.numerator


def _fraction_problem(text: str, parse: Callable[[str], Any], *, nested_ok: bool) -> str | None:
    for top, bottom in _fractions(text):
        if not nested_ok and (_FRAC.search(top) or _FRAC.search(bottom) or "/" in top + bottom):
            return "a fraction inside a fraction"
        p, q = _integer(top, parse), _integer(bottom, parse)
        if p is None or q is None:
            continue
        if abs(q) == 1:
            return f"not in lowest terms (\\frac{{{p}}}{{{q}}} is an integer)"
        if q != 0 and math.gcd(p, q) > 1:
            reduced = Fraction(p, q)
            lowest = f"{_short(reduced.numerator)}/{_short(reduced.denominator)}"
            return f"not in lowest terms ({_short(p)}/{_short(q)} reduces to {lowest})"
    return None


def _short(n: int) -> str:
    return str(n) if n.bit_length() < 200 else f"<{n.bit_length()}-bit integer>"


# -- roots --------------------------------------------------------------------------------


def _root_problem(text: str, parse: Callable[[str], Any]) -> str | None:
    for match in _ROOT.finditer(text):
        index, degree = match.end(), 2
        if text[index : index + 1] == "[":
            close = text.find("]", index)
            if close < 0:
                continue
            degree = _integer(text[index + 1 : close], parse) or 0
            index = close + 1
        argument = _argument(text, index)
        if argument is None or not 2 <= degree <= 64:
            continue
        radicand = _integer(argument[0], parse)
        if radicand is not None and radicand > 1 and _has_power_factor(radicand, degree):
            return f"a root that is not simplified (\\sqrt{{{_short(radicand)}}} has a perfect power factor)"
    return None


def _has_power_factor(n: int, degree: int) -> bool:
    """Whether some k > 1 has k**degree dividing n (small primes, then n's cofactor itself)."""
    factors = sympy.factorint(n, limit=10_000)
    if any(exponent >= degree for prime, exponent in factors.items() if prime < 10_000):
        return True
    rest = n
    for prime, exponent in factors.items():
        if prime < 10_000:
            rest //= prime**exponent
    return rest > 1 and sympy.integer_nthroot(rest, degree)[1]


# -- polynomials --------------------------------------------------------------------------


def _expanded_problem(text: str, value: Any) -> str | None:
    if isinstance(value, sympy.Eq) and isinstance(value.lhs, sympy.Symbol):
        value, text = value.rhs, text.split("=", 1)[-1]
    if not isinstance(value, sympy.Expr) or not value.is_polynomial(*value.free_symbols):
        return "not a polynomial"
    for node in sympy.preorder_traversal(value):
        if isinstance(node, sympy.Mul) and any(isinstance(a, sympy.Add) for a in node.args):
            return "not expanded (a product of sums)"
        if isinstance(node, sympy.Pow) and isinstance(node.base, sympy.Add):
            return "not expanded (a power of a sum)"
    # The parser collects like terms as it reads (x + 2 + 3x -> 4x + 2): count the terms
    # as written instead.
    if _written_terms(text) > len(sympy.Add.make_args(sympy.expand(value))):
        return "like terms not collected"
    return None


def _written_terms(text: str) -> int:
    """Terms joined by + or - outside any brackets (a sign that starts a term is no join)."""
    depth, terms, previous = 0, 1, ""
    for char in text:
        if char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
        elif char in "+-" and depth == 0 and previous not in ("", "+", "-", "^", "_", "=", "*", "/"):
            terms += 1
        if char != " ":
            previous = char
    return terms
