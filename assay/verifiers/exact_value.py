"""How big an exact number an expression would evaluate to, without evaluating it, and
the exact rational value of one that is small enough.

The math verifier and the answer forms (`answer_form.py`) both need these before they let
sympy evaluate anything: `10^{10^{10}}` must be refused by its size, not by running out
of memory computing it.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import sympy
from sympy import Basic

#: Exact integers larger than this many bits are not evaluated (about 1.2 million digits).
MAX_EXACT_BITS = 1 << 22


def magnitude_bits(expr: Any) -> float:
    """An upper bound on the bits of any exact number `expr` would evaluate to.

    Walks the tree without evaluating it, so `10^{10^{10}}` costs nothing here
    (evaluating it would not finish). Symbols and floats count as small.
    """
    if not isinstance(expr, Basic):
        return 1.0
    if isinstance(expr, sympy.Integer):
        return float(max(1, int(expr).bit_length()))
    if isinstance(expr, sympy.Rational):
        return float(max(1, expr.p.bit_length(), expr.q.bit_length()))
    if isinstance(expr, sympy.Pow):
        base, exponent = magnitude_bits(expr.base), magnitude_bits(expr.exp)
        if exponent > 40:
            return math.inf
        return base * 2.0**exponent
    if isinstance(expr, sympy.factorial):
        n_bits = magnitude_bits(expr.args[0])
        if n_bits > 40:
            return math.inf
        n = 2.0**n_bits
        return n * max(1.0, math.log2(n))
    children = [magnitude_bits(arg) for arg in expr.args]
    if not children:
        return 1.0
    if isinstance(expr, sympy.Mul):
        return sum(children)
    return max(children) + 1.0


def too_large(expr: Any) -> bool:
    try:
        return magnitude_bits(expr) > MAX_EXACT_BITS
    except RecursionError:
        return True


def exact_rational(expr: Any) -> Fraction | None:
    """The exact rational value of an expression built only from integers, fractions,
    + * integer powers and factorials; None for anything else (floats, percentages,
    radicals, symbols). Call only on expressions that are not `too_large`."""
    if isinstance(expr, sympy.Rational):  # Integer is a Rational
        return Fraction(int(expr.p), int(expr.q))
    if isinstance(expr, (sympy.Add, sympy.Mul)):
        parts = [exact_rational(arg) for arg in expr.args]
        if any(part is None for part in parts):
            return None
        total = parts[0]
        for part in parts[1:]:
            total = total + part if isinstance(expr, sympy.Add) else total * part
        return total
    if isinstance(expr, sympy.Pow) and isinstance(expr.exp, sympy.Integer):
        base = exact_rational(expr.base)
        if base is None or (base == 0 and expr.exp < 0):
            return None
        return base ** int(expr.exp)
    if isinstance(expr, sympy.factorial) and isinstance(expr.args[0], sympy.Integer):
        n = int(expr.args[0])
        return Fraction(math.factorial(n)) if n >= 0 else None
    return None
