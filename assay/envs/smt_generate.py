"""Procedural SMT tasks: solvable or provably unsatisfiable by construction, graded 1-5.

Each family returns the SMT-LIB script, the expected answer kind (`sat` or `unsat`) and,
for `sat`, an assignment that satisfies it (the construction's witness; the verifier
accepts any other that does too):

  linear:      integer unknowns and random linear (in)equalities around a hidden point;
  system:      n linear equations in n integer unknowns with a unique solution;
  polynomial:  products and squares over the reals around a hidden rational point;
  boolean:     random 3-clauses all satisfied by a hidden truth assignment;
  pigeonhole:  n + 1 pigeons in n holes, one per hole (unsat; hard for resolution);
  parity:      a combination whose coefficients share a factor k equals a value that k
               does not divide (unsat over the integers);
  interval:    bounds that leave no integer between them (unsat over the integers,
               though the reals would have one), or contradictory sums.

Difficulty raises the number of unknowns, constraints and the size of coefficients.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from fractions import Fraction

from assay.verifiers.smtlib import Value, format_assignment

SAT_KINDS = ("linear", "system", "polynomial", "boolean")
UNSAT_KINDS = ("pigeonhole", "parity", "interval")
KINDS = SAT_KINDS + UNSAT_KINDS
#: A generated task: (SMT-LIB script, "sat" or "unsat", witness assignment or None).
Generated = tuple[str, str, str | None]
_RELATIONS = ("=", "<=", ">=", "<", ">")


def num(value: int | Fraction) -> str:
    """An SMT-LIB literal: `3`, `(- 3)`, `2.25`, `(/ 1 3)` (negative numerals are terms)."""
    value = Fraction(value)
    magnitude = abs(value)
    if magnitude.denominator == 1:
        text = str(magnitude.numerator)
    elif _is_decimal(magnitude):
        text = _decimal(magnitude)
    else:
        text = f"(/ {magnitude.numerator} {magnitude.denominator})"
    return f"(- {text})" if value < 0 else text


def _is_decimal(value: Fraction) -> bool:
    q = value.denominator
    for p in (2, 5):
        while q % p == 0:
            q //= p
    return q == 1


def _decimal(value: Fraction) -> str:
    digits = 0
    while (value * 10**digits).denominator != 1:
        digits += 1
    whole = value.numerator * 10**digits // value.denominator
    text = str(whole).rjust(digits + 1, "0")
    return f"{text[:-digits]}.{text[-digits:]}" if digits else f"{text}.0"


def linear_term(coefficients: dict[str, int | Fraction]) -> str:
    """`(+ (* 3 x) (* (- 2) y))`, or the single product when there is one term."""
    parts = [name if c == 1 else f"(* {num(c)} {name})" for name, c in coefficients.items()]
    return parts[0] if len(parts) == 1 else f"(+ {' '.join(parts)})"


def script(constants: dict[str, str], assertions: list[str]) -> str:
    decls = " ".join(f"(declare-const {n} {s})" for n, s in constants.items())
    return decls + "\n" + "\n".join(f"(assert {a})" for a in assertions)


def _names(count: int) -> list[str]:
    return ["x", "y", "z", "w", "v", "u"][:count]


def _nonzero(rng: random.Random, bound: int) -> int:
    return rng.choice([c for c in range(-bound, bound + 1) if c != 0])


def _relation(rng: random.Random, value: int | Fraction, term: str) -> str:
    """A random relation between `term` and a constant that holds at `value` (the term's
    value at the hidden point)."""
    op = rng.choice(_RELATIONS)
    slack = rng.randint(0, 2)
    rhs = {"=": value, "<=": value + slack, ">=": value - slack,
           "<": value + 1 + slack, ">": value - 1 - slack}[op]
    return f"({op} {term} {num(rhs)})"


def linear(rng: random.Random, difficulty: int, max_value: int) -> Generated:
    names = _names(min(2 + difficulty // 2, 4))
    point = {n: rng.randint(-max_value, max_value) for n in names}
    bound = 2 + difficulty
    assertions = []
    for _ in range(len(names) + difficulty // 2):
        chosen = rng.sample(names, rng.randint(1, len(names)))
        coefficients = {n: _nonzero(rng, bound) for n in sorted(chosen, key=names.index)}
        value = sum(c * point[n] for n, c in coefficients.items())
        assertions.append(_relation(rng, value, linear_term(coefficients)))
    # One equation over every unknown, so that the point is not too easy to stumble on.
    coefficients = {n: _nonzero(rng, bound) for n in names}
    value = sum(c * point[n] for n, c in coefficients.items())
    assertions.append(f"(= {linear_term(coefficients)} {num(value)})")
    return script({n: "Int" for n in names}, assertions), "sat", format_assignment(point)


def _determinant(rows: list[list[int]]) -> Fraction:
    m = [[Fraction(v) for v in row] for row in rows]
    det = Fraction(1)
    for i in range(len(m)):
        pivot = next((r for r in range(i, len(m)) if m[r][i] != 0), None)
        if pivot is None:
            return Fraction(0)
        if pivot != i:
            m[i], m[pivot] = m[pivot], m[i]
            det = -det
        det *= m[i][i]
        for r in range(i + 1, len(m)):
            factor = m[r][i] / m[i][i]
            m[r] = [a - factor * b for a, b in zip(m[r], m[i], strict=True)]
    return det


def system(rng: random.Random, difficulty: int, max_value: int) -> Generated:
    names = _names(2 + (difficulty >= 3) + (difficulty >= 5))
    point = {n: rng.randint(-max_value, max_value) for n in names}
    bound = 2 + difficulty
    while True:
        rows = [[rng.randint(-bound, bound) for _ in names] for _ in names]
        if _determinant(rows) != 0:
            break
    assertions = []
    for row in rows:
        coefficients = {n: c for n, c in zip(names, row, strict=True) if c != 0}
        value = sum(c * point[n] for n, c in coefficients.items())
        assertions.append(f"(= {linear_term(coefficients)} {num(value)})")
    return script({n: "Int" for n in names}, assertions), "sat", format_assignment(point)


def polynomial(rng: random.Random, difficulty: int, max_value: int) -> Generated:
    names = _names(2 if difficulty < 4 else 3)
    denominators = (1, 2) if difficulty < 3 else (1, 2, 4, 5)
    point = {n: Fraction(rng.randint(-max_value * q, max_value * q), q)
             for n, q in ((n, rng.choice(denominators)) for n in names)}
    assertions = []
    for _ in range(1 + difficulty):
        a, b = rng.sample(names, 2)
        shape = rng.randrange(3)
        if shape == 0:  # a*b + k*a
            k = _nonzero(rng, 3)
            term, value = f"(+ (* {a} {b}) (* {num(k)} {a}))", point[a] * point[b] + k * point[a]
        elif shape == 1:  # a^2 - b
            term, value = f"(- (* {a} {a}) {b})", point[a] ** 2 - point[b]
        else:  # k*a + m*b
            coefficients = {a: _nonzero(rng, 4), b: _nonzero(rng, 4)}
            term = linear_term(coefficients)
            value = sum(c * point[n] for n, c in coefficients.items())
        assertions.append(_relation(rng, value, term))
    values: dict[str, Value] = dict(point)
    return script({n: "Real" for n in names}, assertions), "sat", format_assignment(values)


def boolean(rng: random.Random, difficulty: int, max_value: int) -> Generated:
    names = [f"p{i}" for i in range(1, 4 + 2 * difficulty)]
    point = {n: rng.random() < 0.5 for n in names}
    assertions = []
    for _ in range(int(3.5 * len(names))):
        while True:
            chosen = rng.sample(names, 3)
            signs = [rng.random() < 0.5 for _ in chosen]
            if any(point[n] == s for n, s in zip(chosen, signs, strict=True)):
                break
        literals = [n if s else f"(not {n})" for n, s in zip(chosen, signs, strict=True)]
        assertions.append(f"(or {' '.join(literals)})")
    values: dict[str, Value] = dict(point)
    return script({n: "Bool" for n in names}, assertions), "sat", format_assignment(values)


def pigeonhole(rng: random.Random, difficulty: int, max_value: int) -> Generated:
    holes = min(1 + difficulty, 5)  # 7 pigeons in 6 holes already takes z3 seconds
    pigeons = holes + 1
    names = {(i, j): f"p{i}h{j}" for i in range(1, pigeons + 1) for j in range(1, holes + 1)}
    assertions = [
        f"(or {' '.join(names[i, j] for j in range(1, holes + 1))})" for i in range(1, pigeons + 1)
    ]
    for j in range(1, holes + 1):
        for i in range(1, pigeons + 1):
            for k in range(i + 1, pigeons + 1):
                assertions.append(f"(not (and {names[i, j]} {names[k, j]}))")
    rng.shuffle(assertions)
    return script({n: "Bool" for n in names.values()}, assertions), "unsat", None


def parity(rng: random.Random, difficulty: int, max_value: int) -> Generated:
    names = _names(min(1 + difficulty, 4))
    k = rng.randint(2, 1 + difficulty)
    coefficients = {n: k * _nonzero(rng, 3) for n in names}
    value = k * rng.randint(-max_value, max_value) + rng.randint(1, k - 1)
    assertions = [f"(= {linear_term(coefficients)} {num(value)})"]
    for n in rng.sample(names, rng.randint(0, len(names))):  # bounds that change nothing
        assertions.append(f"(<= {n} {num(rng.randint(max_value, 3 * max_value))})")
    return script({n: "Int" for n in names}, assertions), "unsat", None


def interval(rng: random.Random, difficulty: int, max_value: int) -> Generated:
    names = _names(min(1 + difficulty // 2, 3))
    coefficients = {n: _nonzero(rng, 1 + difficulty) for n in names}
    term = linear_term(coefficients)
    low = rng.randint(-max_value, max_value)
    if rng.random() < 0.5:  # strictly between low and low + 1: no integer
        assertions = [f"(> {term} {num(low)})", f"(< {term} {num(low + 1)})"]
    else:  # at most low and at least low + gap
        assertions = [f"(<= {term} {num(low)})", f"(>= {term} {num(low + rng.randint(1, 3))})"]
    for n in names:  # bounds that hide the contradiction among other facts
        assertions.append(f"(>= {n} {num(-3 * max_value - 10)})")
    rng.shuffle(assertions)
    return script({n: "Int" for n in names}, assertions), "unsat", None


GENERATORS: dict[str, Callable[[random.Random, int, int], Generated]] = {
    "linear": linear,
    "system": system,
    "polynomial": polynomial,
    "boolean": boolean,
    "pigeonhole": pigeonhole,
    "parity": parity,
    "interval": interval,
}
