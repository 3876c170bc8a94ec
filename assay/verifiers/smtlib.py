"""Reading SMT-LIB 2 scripts and answers to them, bounded, without a solver.

A task's `smtlib` field is text from a task file, so it is read here with hard caps on
its length, its nesting and the size of its numbers before anything reaches z3; only
the commands that describe a constraint problem are accepted (`declare-const`,
`declare-fun` with no arguments, `assert`; `set-logic`, `set-info`, `check-sat`,
`get-model`, `get-value` and `exit` are allowed and dropped, and, as in SMT-LIB, nothing
after `(exit)` is read). What z3 then parses is the script rebuilt from the accepted
commands, never the text as it came.

An answer is either `unsat` or an assignment `x = 8, y = -3/4, p = true` of every
declared constant; `parse_assignment` reads it into exact values (`int`, `Fraction`,
`bool`) with the same kind of caps. Nothing here imports z3 or any other part of assay.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

#: Longest script accepted (characters): generated tasks are a few hundred.
MAX_SCRIPT_CHARS = 100_000
#: Deepest nesting of parentheses in a script.
MAX_DEPTH = 64
#: Most tokens in a script.
MAX_TOKENS = 20_000
#: Most digits in a numeral, in a script or an answer: larger numbers make no sensible task
#: and let a short text cost the solver a lot.
MAX_DIGITS = 200
#: Longest answer accepted (characters).
MAX_ANSWER_CHARS = 4_000
#: Most declared constants: each must be assigned in an answer.
MAX_CONSTANTS = 200
#: The sorts a declared constant may have: those an answer can give a value of.
SORTS = ("Int", "Real", "Bool")
#: Names an answer can assign: SMT-LIB simple symbols without `=`, `,`, `;` or `|`.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_~!@$%^&*+.?<>/-]*")

_DROPPED = ("set-logic", "set-info", "check-sat", "get-model", "get-value", "exit")
_TOKEN = re.compile(
    r"""\s+|;[^\n]*|(?P<open>\()|(?P<close>\))|(?P<string>"(?:[^"]|"")*")|(?P<quoted>\|[^|\\]*\|)"""
    r"""|(?P<atom>[^\s()";|]+)"""
)
_NUMERAL = re.compile(r"\d+(?:\.\d+)?")


class SmtLibError(ValueError):
    """A script that cannot be used as a task: the message says what and where."""


@dataclass(frozen=True)
class Script:
    """A parsed task: the declared constants (name -> sort), in order, and the assertions.

    `assertions` are the assert terms as SMT-LIB text, rebuilt from the parse;
    `text` is the whole rebuilt script (declarations, then assertions) for z3.
    """

    constants: dict[str, str]
    assertions: tuple[str, ...]
    terms: tuple[object, ...]  # the assertions as nested lists of atoms (the compact form)

    @property
    def text(self) -> str:
        decls = "".join(f"(declare-const {n} {s})\n" for n, s in self.constants.items())
        return decls + "".join(f"(assert {a})\n" for a in self.assertions)


def tokens(text: str) -> list[str]:
    """The tokens of `text`, comments and whitespace dropped; a stray character is an error."""
    return list(_tokens(text))


def _tokens(text: str) -> Iterator[str]:
    """`tokens`, one at a time: a reader that stops early reads no further."""
    pos = count = 0
    while pos < len(text):
        found = _TOKEN.match(text, pos)
        if found is None:
            raise SmtLibError(f"unreadable text at character {pos}: {text[pos:pos + 20]!r}")
        pos = found.end()
        if found.lastgroup is not None:
            count += 1
            if count > MAX_TOKENS:
                raise SmtLibError(f"more than {MAX_TOKENS} tokens")
            yield found.group(found.lastgroup)


def read_sexprs(text: str, *, until: str | None = None) -> list[object]:
    """The top-level S-expressions of `text` as nested lists of atom strings.

    With `until` (a command name, such as "exit"), reading stops after the first top-level
    `(until ...)`: what follows is not read at all. Iterative, so that deep nesting meets
    `MAX_DEPTH`, never Python's recursion limit.
    """
    if len(text) > MAX_SCRIPT_CHARS:
        raise SmtLibError(f"longer than {MAX_SCRIPT_CHARS} characters")
    stack: list[list[object]] = [[]]
    for token in _tokens(text):
        if token == "(":
            if len(stack) > MAX_DEPTH:
                raise SmtLibError(f"nested deeper than {MAX_DEPTH} levels")
            stack.append([])
        elif token == ")":
            if len(stack) == 1:
                raise SmtLibError("unbalanced ')'")
            done = stack.pop()
            stack[-1].append(done)
            if until is not None and len(stack) == 1 and done[:1] == [until]:
                return stack[0]
        else:
            digits = _NUMERAL.fullmatch(token)
            if digits is not None and len(token) > MAX_DIGITS:
                raise SmtLibError(f"a number with more than {MAX_DIGITS} digits")
            stack[-1].append(token)
    if len(stack) != 1:
        raise SmtLibError("unbalanced '(': the script ends inside an expression")
    return stack[0]


def show(term: object) -> str:
    """SMT-LIB text of a term read by `read_sexprs`."""
    if isinstance(term, str):
        return term
    parts: list[str] = []
    # Iterative as well: terms may be MAX_DEPTH deep.
    stack: list[object] = [term]
    previous = "("
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.append(_CLOSE)
            stack.extend(reversed(item))
            token = "("
        else:
            token = ")" if item is _CLOSE else str(item)
        if previous != "(" and token != ")":
            parts.append(" ")
        parts.append(token)
        previous = token
    return "".join(parts)


_CLOSE = object()  # the end of a list, in `show`'s stack (a ")" atom cannot be told apart)


def parse_script(text: str) -> Script:
    """Read a task's SMT-LIB script; raises `SmtLibError` naming the first problem."""
    if not isinstance(text, str):
        raise SmtLibError("expected SMT-LIB text")
    constants: dict[str, str] = {}
    assertions: list[object] = []
    # as in SMT-LIB, where a solver stops at (exit): nothing after it is read
    for index, command in enumerate(read_sexprs(text, until="exit"), start=1):
        if not isinstance(command, list) or not command or not isinstance(command[0], str):
            raise SmtLibError(f"command {index}: expected (command ...), got {show(command)[:60]!r}")
        head = command[0]
        if head in _DROPPED:
            continue
        if head == "assert":
            if len(command) != 2:
                raise SmtLibError(f"command {index}: assert takes one term")
            assertions.append(command[1])
        elif head in ("declare-const", "declare-fun"):
            name, sort = _declaration(index, command)
            if name in constants:
                raise SmtLibError(f"command {index}: {name!r} is declared twice")
            constants[name] = sort
            if len(constants) > MAX_CONSTANTS:
                raise SmtLibError(f"more than {MAX_CONSTANTS} constants")
        else:
            raise SmtLibError(
                f"command {index}: {head!r} is not supported (only declare-const, declare-fun "
                "with no arguments and assert; set-logic, set-info, check-sat, get-model, "
                "get-value and exit are ignored)"
            )
    if not constants:
        raise SmtLibError("declares no constants")
    if not assertions:
        raise SmtLibError("asserts nothing")
    return Script(constants, tuple(show(a) for a in assertions), tuple(assertions))


def _declaration(index: int, command: list[object]) -> tuple[str, str]:
    head = command[0]
    if head == "declare-fun":
        if len(command) != 4 or command[2] != []:
            raise SmtLibError(
                f"command {index}: only declare-fun with no arguments (a constant) is supported"
            )
        command = [head, command[1], command[3]]
    if len(command) != 3:
        raise SmtLibError(f"command {index}: expected ({head} NAME SORT)")
    name, sort = command[1], command[2]
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise SmtLibError(
            f"command {index}: constant name {show(name)[:40]!r} cannot be assigned in an answer "
            "(use a letter or _, then letters, digits and _~!@$%^&*+.?<>/-)"
        )
    if sort not in SORTS:
        raise SmtLibError(f"command {index}: {name} has sort {show(sort)[:40]!r}; supported: Int, Real, Bool")
    return name, str(sort)


# -- answers ---------------------------------------------------------------------------------

Value = int | Fraction | bool

_INTEGER = re.compile(r"[+-]?\d+")
_RATIONAL = re.compile(r"[+-]?\d+/\d+")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+)")


class AnswerError(ValueError):
    """An answer that is not a well-formed, complete, well-typed assignment."""


def is_unsat_claim(answer: str) -> bool:
    """Whether an answer says the constraints are unsatisfiable (`unsat`, any case)."""
    return answer.strip().rstrip(".").strip().lower() in ("unsat", "unsatisfiable")


def parse_value(text: str, sort: str, name: str) -> Value:
    """One value of the given sort; raises `AnswerError` when it is not one."""
    digits = sum(ch.isdigit() for ch in text)
    if digits > MAX_DIGITS:
        raise AnswerError(f"{name}: a number with more than {MAX_DIGITS} digits")
    if sort == "Bool":
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise AnswerError(f"{name} is Bool: expected true or false, got {text[:40]!r}")
    if _INTEGER.fullmatch(text):
        return int(text)
    if sort == "Int":
        raise AnswerError(f"{name} is Int: expected an integer, got {text[:40]!r}")
    if _RATIONAL.fullmatch(text):
        numerator, denominator = text.split("/")
        if int(denominator) == 0:
            raise AnswerError(f"{name}: division by zero in {text[:40]!r}")
        return Fraction(int(numerator), int(denominator))
    if _DECIMAL.fullmatch(text):
        return Fraction(text)
    raise AnswerError(
        f"{name} is Real: expected an integer, a rational like -3/4 or a decimal, got {text[:40]!r}"
    )


def parse_assignment(answer: str, constants: dict[str, str]) -> dict[str, Value]:
    """`x = 8, y = -3/4, p = true` as exact values of every declared constant.

    Assignments are separated by commas, semicolons or new lines. An undeclared or twice
    assigned constant, a missing one, a value of the wrong sort or a malformed piece is
    an `AnswerError` naming it. The text is never evaluated.
    """
    if len(answer) > MAX_ANSWER_CHARS:
        raise AnswerError(f"answer longer than {MAX_ANSWER_CHARS} characters")
    values: dict[str, Value] = {}
    pieces = [p.strip() for p in re.split(r"[,;\n]", answer)]
    for piece in pieces:
        if not piece:
            continue
        name, sep, value = piece.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise AnswerError(f"expected NAME = VALUE, got {piece[:40]!r}")
        if name not in constants:
            raise AnswerError(f"{name[:40]!r} is not a declared constant")
        if name in values:
            raise AnswerError(f"{name} is assigned twice")
        values[name] = parse_value(value, constants[name], name)
    missing = [n for n in constants if n not in values]
    if not values:
        raise AnswerError("no assignment: expected `x = 1, y = 2` or `unsat`")
    if missing:
        raise AnswerError(f"not assigned: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return values


def format_value(value: Value) -> str:
    """A value as an answer writes it: `true`, `-3`, `-3/4`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Fraction) and value.denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    return str(int(value))


def format_assignment(values: dict[str, Value]) -> str:
    """An assignment as an answer writes it: `x = 8, y = -3/4`."""
    return ", ".join(f"{name} = {format_value(v)}" for name, v in values.items())
