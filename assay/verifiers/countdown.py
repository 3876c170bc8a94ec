"""Countdown checker: is an arithmetic expression over the given numbers equal to the target?

The answer is model text, so it is parsed with `ast` against a whitelist and
evaluated by our own walker with exact `Fraction` arithmetic: never `eval`, never
sympy's `parse_expr` (which evaluates). The cost is bounded on any input: the
text is capped in length and nesting before parsing, and only expressions whose
literals are exactly the given numbers are ever evaluated.
"""

from __future__ import annotations

import ast
from collections import Counter
from fractions import Fraction

from assay.verifiers.verdict import Verdict

#: Longest answer we parse (characters, whitespace excluded). A legitimate answer over
#: a few numbers is tens of characters; this also bounds parsing time and memory.
MAX_ANSWER_CHARS = 1000
#: Deepest nesting accepted (parentheses or unary minus); Python's parser gives up near 200.
MAX_DEPTH = 64

_ALLOWED_CHARS = frozenset("0123456789+-*/() \t\n\r")
_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def parse_expression(text: str) -> ast.expr | str:
    """Parse `text` as a countdown expression; returns the AST or a reason it is invalid."""
    compact = "".join(text.split())
    if not compact:
        return "empty answer"
    if len(compact) > MAX_ANSWER_CHARS:
        return f"answer longer than {MAX_ANSWER_CHARS} characters"
    if "=" in compact:
        return "an equation, not an expression ('=' is not allowed)"
    bad = sorted(set(compact) - _ALLOWED_CHARS)
    if bad:
        return f"disallowed character(s) {''.join(bad)!r}: only digits, + - * / and parentheses"
    depth = 0
    for ch in compact:
        depth += (ch == "(") - (ch == ")")
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
    try:
        tree = ast.parse(compact, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return f"not an arithmetic expression ({type(exc).__name__})"
    # Walk iteratively with depths, so that hostile nesting cannot overflow our stack.
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, level = stack.pop()
        if level > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                return f"operator {type(node.op).__name__} is not allowed (only + - * /)"
            stack += [(node.left, level + 1), (node.right, level + 1)]
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub):
                return f"unary {type(node.op).__name__} is not allowed (only unary minus)"
            stack.append((node.operand, level + 1))
        elif isinstance(node, ast.Constant):
            if type(node.value) is not int:
                return f"literal {node.value!r} is not an integer"
        else:
            return f"{type(node).__name__} is not allowed"
    return tree.body


def literals(tree: ast.expr) -> list[int]:
    """The integer literals of a parsed expression, in order."""
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]


def evaluate(tree: ast.expr, steps: list[Fraction] | None = None) -> Fraction:
    """Exact value of a whitelisted expression. Raises ZeroDivisionError on division by zero.

    With `steps`, the value of each binary operation is appended to it in the order the
    operations are done (left operand, right operand, then the operation): `5+1*2` gives
    `[2, 7]`. Unary minus is not a step.
    """
    if isinstance(tree, ast.Constant):
        return Fraction(tree.value)
    if isinstance(tree, ast.UnaryOp):
        return -evaluate(tree.operand, steps)
    assert isinstance(tree, ast.BinOp)
    left, right = evaluate(tree.left, steps), evaluate(tree.right, steps)
    op = type(tree.op)
    if op is ast.Add:
        value = left + right
    elif op is ast.Sub:
        value = left - right
    elif op is ast.Mult:
        value = left * right
    else:
        value = left / right
    if steps is not None:
        steps.append(value)
    return value


def expression_value(text: str) -> Fraction | None:
    """The exact value of an expression, or None if it does not parse or divides by zero."""
    tree = parse_expression(text)
    if isinstance(tree, str):
        return None
    try:
        return evaluate(tree)
    except ZeroDivisionError:
        return None


def check_countdown(
    expression: str, numbers: list[int], target: int, *, format_score: float = 0.0
) -> Verdict:
    """Verdict for `expression` against a countdown task.

    correct:   uses every number exactly once (as a multiset) and equals target exactly;
    incorrect: a well-formed expression that uses the wrong numbers, divides by zero or
               misses the target (scores `format_score`, TinyZero's 0.1 if you want it);
    invalid:   anything outside the grammar (never evaluated).
    """
    tree = parse_expression(expression)
    if isinstance(tree, str):
        return Verdict.invalid(tree)
    used, given = Counter(literals(tree)), Counter(numbers)
    if used != given:
        extra = sorted((used - given).elements())
        missing = sorted((given - used).elements())
        parts = []
        if extra:
            parts.append(f"uses {extra} beyond the given numbers")
        if missing:
            parts.append(f"does not use {missing}")
        return Verdict.wrong("; ".join(parts), score=format_score)
    try:
        value = evaluate(tree)
    except ZeroDivisionError:
        return Verdict.wrong("division by zero", score=format_score)
    if value != target:
        return Verdict.wrong(f"evaluates to {value}, not {target}", score=format_score)
    return Verdict.right(f"= {target}")
