"""Math answer checking: mathematical equivalence to a gold answer, built on math-verify.

math-verify (HuggingFace) is the field's equivalence library: it parses LaTeX into
sympy and compares numbers, expressions, sets, intervals, equations and matrices.
We use it for that, and go beyond it where it is known to be wrong:

- exact values first: two answers that are exact rationals (integers, fractions,
  powers, factorials) are compared exactly, so `1/2004!` is not `1/2006!` (math-verify
  subtracts and rounds the difference to zero);
- a value that math-verify calls equal but that differs at 30 significant digits is
  not equal (`e^{-1000}` vs `e^{-1001}`); a decimal answer must also agree with the
  gold to a relative 1e-4, so `0.0` is not `1/2004!`;
- an equation is not a value: `x^2 = 4` does not answer "4" (an assignment `x = 4` does);
- only the extracted answer is parsed, and only as LaTeX: math-verify's plain-text
  extractor turns `x^2 - 4 = 0` into its last number, 0, so different equations
  compared equal;
- upright constants (`\\mathrm{e}`, `\\mathrm{i}`) are normalised before parsing
  (math-verify stopped reading at them: `1-\\frac{1}{\\mathrm{e}}` equalled
  `1+\\frac{1}{\\mathrm{e}}`), and an answer it cannot parse is compared by its whole
  text, never by the fragment it managed to read;
- values too large to evaluate (towers of exponents) are compared by structure
  instead of hanging;
- several different answers against a single gold answer are hedging: `incorrect`.
  A gold answer that is a set is compared as a set, with the answers pooled.

Nothing here has a time limit of its own: math-verify's SIGALRM timeouts are turned
off (they fail off the main thread) and the caller bounds every check with a hard
limit in a worker process (`assay.verifiers.timelimit`), as `MathEnv` does.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sympy
from math_verify import LatexExtractionConfig, parse, verify
from math_verify import grader as _mv_grader
from math_verify import parser as _mv_parser
from sympy import Basic, MatrixBase

from assay.verifiers import answer_form
from assay.verifiers.answer_form import FORMS  # noqa: F401  (the forms, importable from here)
from assay.verifiers.exact_value import (  # noqa: F401  (importable from here, as before)
    MAX_EXACT_BITS,
    exact_rational,
    magnitude_bits,
    too_large,
)
from assay.verifiers.latex_answer import clean_answer, plain_text_key, too_complex
from assay.verifiers.verdict import Verdict

# We pass timeout=None on purpose (our hard limit is a worker process); silence the
# reminder math-verify logs once per process about that.
_mv_parser.TIMEOUT_WARNING_SHOWN = True
_mv_grader.TIMEOUT_WARNING_SHOWN = True

#: Most different answers one completion may give before it is called hedging outright.
MAX_ANSWERS = 16
#: Relative agreement a decimal answer needs with the gold value.
DECIMAL_TOLERANCE = 1e-4
#: Relative agreement two exact closed forms need at 30 significant digits.
EXACT_TOLERANCE = 1e-20

_NOT_FINITE = (sympy.nan, sympy.zoo, sympy.oo, -sympy.oo)
_LATEX_ONLY = (LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False),)
Parsed = Basic | MatrixBase


# -- parsing ------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def parse_answer(answer: str) -> Parsed | None:
    """The sympy value of one answer's LaTeX, or None when it cannot be parsed.

    Only math-verify's LaTeX reader is used, on the answer alone: never its
    plain-text extractor, and never sympy's `parse_expr` (which evaluates text).
    Cached, since a group's completions share one gold answer.
    """
    text = clean_answer(answer)
    if not text:
        return None
    found = parse(
        "\\boxed{" + text + "}",
        extraction_config=_LATEX_ONLY,
        fallback_mode="no_fallback",
        parsing_timeout=None,
    )
    return next((item for item in found if isinstance(item, (Basic, MatrixBase))), None)


@dataclass(frozen=True)
class Answer:
    """One answer's text with its parsed value, or the reason it was not parsed."""

    text: str
    value: Parsed | None
    refused: str | None = None

    @classmethod
    def read(cls, text: str) -> Answer:
        reason = too_complex(clean_answer(text))
        if reason is not None:
            return cls(text, None, reason)
        return cls(text, parse_answer(text))

    @property
    def shown(self) -> str:
        return self.text if len(self.text) <= 60 else self.text[:57] + "..."


def exact_decimals(expr: Parsed) -> Parsed:
    """`expr` with each finite decimal replaced by the rational it spells (0.1 -> 1/10)."""
    floats = [f for f in expr.atoms(sympy.Float) if f.is_finite]
    return expr.xreplace({f: sympy.Rational(str(f)) for f in floats})


def _is_number(expr: Any) -> bool:
    return (
        isinstance(expr, sympy.Expr)
        and bool(expr.is_number)
        and not expr.has(sympy.UnevaluatedExpr)
    )


def _disagree_numerically(gold: Any, pred: Any) -> bool:
    """True when two closed-form numbers that math-verify called equal differ in value.

    Evaluated as sympy floats (arbitrary exponent range), not Python floats, so that
    values like 1/2004! do not underflow to zero.
    """
    has_decimal = gold.has(sympy.Float) or pred.has(sympy.Float)
    try:
        g, p = sympy.N(gold, 30), sympy.N(pred, 30)
        if not (g.is_number and p.is_number) or g.has(*_NOT_FINITE) or p.has(*_NOT_FINITE):
            return False  # not a finite number: keep math-verify's call
        if g.is_zero:
            return False  # math-verify's absolute rounding is the rule for a zero gold
        scale = sympy.Max(abs(g), abs(p))
        tolerance = DECIMAL_TOLERANCE if has_decimal else EXACT_TOLERANCE
        return bool(sympy.N(abs(g - p), 30) > tolerance * scale)
    except (TypeError, ValueError, ArithmeticError):
        return False


def _is_assignment(expr: Any) -> bool:
    return isinstance(expr, sympy.Eq) and isinstance(expr.lhs, sympy.Symbol)


# -- equivalence ----------------------------------------------------------------------


def equivalent(gold: Parsed, pred: Parsed) -> tuple[bool, str]:
    """Whether `pred` is mathematically equal to `gold`, and a note on how it was decided."""
    if too_large(gold) or too_large(pred):
        return gold == pred, "too large to evaluate: compared by structure"
    exact_gold, exact_pred = exact_rational(gold), exact_rational(pred)
    if exact_gold is not None and exact_pred is not None:
        return exact_gold == exact_pred, "exact rationals"
    if isinstance(pred, sympy.Eq) and not _is_assignment(pred) and isinstance(gold, sympy.Expr):
        return False, "an equation, not a value"
    if not verify(gold, pred, timeout_seconds=None):
        return False, ""
    if _is_number(gold) and _is_number(pred) and _disagree_numerically(gold, pred):
        return False, "differs in value at high precision"
    return True, ""


def same_answer(gold: Answer, pred: Answer) -> tuple[bool, str]:
    """Equivalence of two read answers; unparsable ones are compared by their whole text."""
    if gold.value is not None and pred.value is not None:
        return equivalent(gold.value, pred.value)
    same = plain_text_key(gold.text) == plain_text_key(pred.text)
    unreadable = pred.text if pred.value is None else gold.text
    return same, f"compared as text (could not parse {unreadable[:40]!r})"


def answer_texts(answers: Sequence[str]) -> list[str] | Verdict:
    """The distinct answers to check, or the verdict when there is nothing sensible to check
    (no answer, an empty one, or more different answers than any task asks for)."""
    if not answers:
        return Verdict.invalid("no \\boxed{} answer or <answer> tags")
    texts = distinct_texts(answers)
    if not texts:
        return Verdict.invalid("the answer is empty")
    if len(texts) > MAX_ANSWERS:
        return Verdict.wrong(f"hedging: {len(texts)} different answers")
    return texts


def distinct_texts(answers: Sequence[str]) -> list[str]:
    """The answers with textual repeats removed, each kept at its last position."""
    by_key: dict[str, str] = {}
    for answer in answers:
        key = plain_text_key(answer)
        if key:
            by_key.pop(key, None)
            by_key[key] = answer
    return list(by_key.values())


def _distinct(answers: Sequence[Answer]) -> list[Answer]:
    """One answer per equivalence class, keeping the last of each (in order of last use)."""
    classes: list[Answer] = []
    for answer in answers:
        classes = [c for c in classes if not same_answer(c, answer)[0]] + [answer]
    return classes


def _pooled_set(answers: Sequence[Answer]) -> Parsed | None:
    """Every answer's elements (a set answer contributes its members) as one finite set."""
    elements: list[Any] = []
    for answer in answers:
        if answer.value is None:
            return None
        members = (
            answer.value.args if isinstance(answer.value, sympy.FiniteSet) else (answer.value,)
        )
        for member in members:
            if not any(equivalent(kept, member)[0] for kept in elements):
                elements.append(member)
    return sympy.FiniteSet(*elements)


# -- answer forms (assay/verifiers/answer_form.py) ----------------------------------


def form_problem(answer: Answer, form: str) -> str | None:
    """Why an equivalent answer is not in the required form, or None when it is."""
    return answer_form.form_problem(answer.text, answer.value, form, parse=parse_answer)


# -- verdicts -------------------------------------------------------------------------


def _hedging(answers: Sequence[Answer]) -> Verdict:
    shown = "; ".join(a.shown for a in answers[:4]) + ("; ..." if len(answers) > 4 else "")
    return Verdict.wrong(f"hedging: {len(answers)} different answers ({shown})")


def check_math(answers: Sequence[str], gold: str, *, form: str | None = None) -> Verdict:
    """Verdict for a completion's final answers (in order; the last is the answer).

    correct:   the answer is mathematically equivalent to `gold` (and in `form`, if given)
               and leaves no integral, sum, product, limit or derivative unevaluated
               (unless `gold` does);
    incorrect: it is not, or several different answers were given against a single
               gold answer (hedging); against a set gold, the answers are pooled;
    invalid:   no answer, or one too long or too deeply nested to parse.
    """
    texts = answer_texts(answers)
    if isinstance(texts, Verdict):
        return texts
    read = [Answer.read(t) for t in texts]
    for answer in read:
        if answer.refused:
            return Verdict.invalid(f"{answer.refused}: {answer.shown!r}")
    expected = Answer.read(gold)
    if expected.refused:
        return Verdict.error(f"gold answer: {expected.refused}")

    distinct = _distinct(read)
    if len(distinct) == 1:
        final = distinct[0]
        ok, note = same_answer(expected, final)
    elif isinstance(expected.value, sympy.FiniteSet):
        final = Answer(" , ".join(a.text for a in distinct), _pooled_set(distinct))
        if final.value is None:
            return Verdict.wrong("could not parse every answer of a set")
        ok, note = equivalent(expected.value, final.value)
    else:
        return _hedging(distinct)

    if not ok:
        return Verdict.wrong(
            f"{final.shown!r} is not {expected.shown!r}" + (f" ({note})" if note else "")
        )
    left = answer_form.unevaluated(final.text)
    if left and not answer_form.unevaluated(expected.text):
        # `\int_0^1 e^{-x}dx` equals its value: the question copied back is no answer
        return Verdict.wrong(f"equivalent to {expected.shown!r} but leaves {left} unevaluated")
    if form is not None and final.value is not None:
        problem = form_problem(final, form)
        if problem is not None:
            return Verdict.wrong(f"equivalent to {expected.shown!r} but {problem}")
    elif form is not None:
        return Verdict.wrong(f"could not parse {final.shown!r} to check its form ({form})")
    return Verdict.right(f"= {expected.shown}" + (f" ({note})" if note else ""))


def answer_key(answer: str) -> Hashable:
    """A key under which equivalent answers usually compare equal (for majority vote).

    Exact numbers key by value (`0.5`, `\\frac12` and `x = 1/2` agree), closed forms
    by 12 significant digits, sets by their members' keys, and anything else by its
    expanded sympy form or, when it cannot be parsed, its whitespace-free text.
    """
    read = Answer.read(answer)
    value = read.value
    if value is None or too_large(value):
        return ("text", plain_text_key(answer))
    return _value_key(value)


def _value_key(value: Any) -> Hashable:
    if _is_assignment(value):
        value = value.rhs
    if isinstance(value, sympy.FiniteSet):
        return ("set", frozenset(_value_key(v) for v in value.args))
    value = exact_decimals(value)  # decimals by their exact value: 3.5 keys as 7/2, in matrices too
    exact = exact_rational(value)
    if exact is not None:
        return ("number", exact)
    if _is_number(value):
        try:
            return ("number", str(sympy.N(value, 12)))
        except (TypeError, ValueError):
            pass
    if isinstance(value, sympy.Expr):
        return ("expr", sympy.srepr(sympy.expand(value)))
    return ("expr", sympy.srepr(value))


#: Typical answer shapes. math-verify's LaTeX parser (ANTLR) learns a prediction cache
#: shared by all parses in a process; parsing these once before the workers fork
#: makes every worker, including one that replaces a killed worker, start fast.
_WARM_UP_ANSWERS = (
    "42",
    "3.5",
    r"-\frac{3}{4}",
    r"\frac{\sqrt{2}}{2}",
    r"9\pi",
    r"1 - \frac{1}{e}",
    r"\{1, 2\}",
    "2, 3",
    r"\pm 3",
    "(0, 1]",
    "x = 4",
    "x^2 - 5x + 6 = 0",
    "(x+2)(x-3)",
)
_warmed = False


def warm_up() -> None:
    """Parse and compare typical answers once per process (cheap after the first call),
    so that forked workers start with math-verify's parser caches built."""
    global _warmed
    if _warmed:
        return
    _warmed = True
    values = [parse_answer(text) for text in _WARM_UP_ANSWERS]
    equivalent(values[0], values[2])  # exact rationals
    equivalent(values[3], values[4])  # through math-verify
