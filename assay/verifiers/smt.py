"""SMT checker: does an assignment satisfy SMT-LIB assertions, or do they have none?

z3 decides, on values we parsed ourselves (`assay.verifiers.smtlib`): the answer is never
evaluated as code. An assignment is substituted into every assertion and simplified;
an assertion that does not simplify to a constant (a quantifier, a division by zero,
which SMT-LIB leaves unspecified) holds only if z3 proves it holds whatever that
unspecified part is. `unsat` is correct
only when z3 proves the assertions unsatisfiable; `unknown`, z3's own limit or its
memory cap give `timeout`, which is never rewarded.

Callers bound the wall time from outside (the env runs checks in worker processes that
are killed at the deadline); z3 gets a slightly shorter limit of its own so that an
ordinary hard problem ends as a clean `unknown` instead of a kill, and a cap on its
memory. z3 is imported on first use: `require_z3` turns its absence into one line.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from assay.verifiers.smtlib import (
    AnswerError,
    Script,
    SmtLibError,
    Value,
    format_assignment,
    is_unsat_claim,
    parse_assignment,
    parse_script,
)
from assay.verifiers.verdict import Verdict

INSTALL_HINT = "z3 is not installed: pip install 'assay[smt]' (the z3-solver package)"
#: Parsed tasks kept per process (a worker sees the same tasks G times a step).
_CACHE_SIZE = 256
_parsed: OrderedDict[str, tuple[Script, Any, dict[str, Any]]] = OrderedDict()


class Z3Missing(ImportError):
    """z3 (the `z3-solver` package) is not installed; the message says how to install it."""


def require_z3() -> Any:
    """The z3 module; raises `Z3Missing` with the install line when it is absent."""
    try:
        import z3
    except ImportError:
        raise Z3Missing(INSTALL_HINT) from None
    return z3


def load(smtlib: str) -> tuple[Script, Any, dict[str, Any]]:
    """The parsed script, z3's assertions and the z3 constant of each declared name.

    Raises `SmtLibError` for a script that is not a usable task (z3's own parse errors
    included). Cached per process, by text.
    """
    cached = _parsed.get(smtlib)
    if cached is not None:
        _parsed.move_to_end(smtlib)
        return cached
    z3 = require_z3()
    script = parse_script(smtlib)
    try:
        assertions = z3.parse_smt2_string(script.text)
    except z3.Z3Exception as exc:
        raise SmtLibError(f"z3 cannot read it: {_z3_message(exc)}") from None
    make = {"Int": z3.Int, "Real": z3.Real, "Bool": z3.Bool}
    consts = {name: make[sort](name) for name, sort in script.constants.items()}
    _parsed[smtlib] = (script, assertions, consts)
    if len(_parsed) > _CACHE_SIZE:
        _parsed.popitem(last=False)
    return _parsed[smtlib]


def check_smt(smtlib: str, answer: str, *, time_limit: float = 5.0, memory_mb: int = 512) -> Verdict:
    """Verdict on one answer (`unsat` or an assignment) to the script `smtlib`.

    `time_limit` (seconds) and `memory_mb` bound z3 itself; the caller still bounds
    the wall time from outside. A script that cannot be read is an `error` naming why.
    """
    try:
        script, assertions, consts = load(smtlib)
    except SmtLibError as exc:
        return Verdict.error(f"task smtlib: {exc}"[:500])
    z3 = require_z3()
    _limit_memory(z3, memory_mb)
    if is_unsat_claim(answer):
        return _prove_unsat(z3, assertions, time_limit)
    try:
        values = parse_assignment(answer, script.constants)
    except AnswerError as exc:
        return Verdict.invalid(str(exc)[:500])
    return _check_assignment(z3, script, assertions, consts, values, time_limit)


def _check_assignment(
    z3: Any, script: Script, assertions: Any, consts: dict[str, Any], values: dict[str, Value],
    time_limit: float,
) -> Verdict:
    pairs = [(consts[name], _z3_value(z3, script.constants[name], v)) for name, v in values.items()]
    open_terms = []
    try:
        for index, assertion in enumerate(assertions):
            value = z3.simplify(z3.substitute(assertion, *pairs))
            if z3.is_false(value):
                shown = script.assertions[index] if index < len(script.assertions) else "?"
                return Verdict.wrong(f"assertion {index + 1} is false: {shown[:200]}")
            if not z3.is_true(value):
                open_terms.append(value)
        if not open_terms:
            return Verdict.right("every assertion holds")
        # Not simplified to a constant (a quantifier, a division by zero): the assignment
        # counts only if the rest holds however z3 may read it, i.e. its negation is unsat.
        # A division by zero, which SMT-LIB leaves unspecified, therefore never helps.
        solver = _solver(z3, time_limit)
        solver.add(z3.Not(z3.And(*open_terms)))
        result = solver.check()
    except z3.Z3Exception as exc:
        return _resource_verdict(exc)
    if result == z3.unsat:
        return Verdict.right("every assertion holds (z3 proved the rest)")
    if result == z3.sat:
        return Verdict.wrong("an assertion does not hold under this assignment (z3 found a "
                             "counterexample; a division by zero has no value)")
    return Verdict.timeout(f"z3 could not decide the assignment: {solver.reason_unknown()}")


def _prove_unsat(z3: Any, assertions: Any, time_limit: float) -> Verdict:
    solver = _solver(z3, time_limit)
    try:
        solver.add(*assertions)
        result = solver.check()
        if result == z3.unsat:
            return Verdict.right("z3 proved the assertions unsatisfiable")
        if result == z3.sat:
            return Verdict.wrong(f"satisfiable: z3 found {_show_model(z3, solver.model())}")
    except z3.Z3Exception as exc:
        return _resource_verdict(exc)
    return Verdict.timeout(f"z3 could not prove unsat: {solver.reason_unknown()}")


def find_model(smtlib: str, *, time_limit: float = 5.0) -> str | None | bool:
    """An assignment satisfying `smtlib` (answer text), False when z3 proves it unsat,
    None when z3 cannot tell in time. Used to check task files, not answers."""
    script, assertions, consts = load(smtlib)
    z3 = require_z3()
    solver = _solver(z3, time_limit)
    solver.add(*assertions)
    result = solver.check()
    if result == z3.unsat:
        return False
    if result != z3.sat:
        return None
    return _show_model(z3, solver.model(), consts)


def _solver(z3: Any, time_limit: float) -> Any:
    solver = z3.Solver()
    # z3 stops itself a little before the hard kill: an `unknown` is cheaper than a new worker.
    solver.set("timeout", max(1, int(time_limit * 900)))
    return solver


_memory_set: list[int] = []


def _limit_memory(z3: Any, memory_mb: int) -> None:
    # A process-wide z3 parameter: z3 fails an allocation past it (a Z3Exception, here a
    # `timeout` verdict) rather than letting one check take the machine's memory.
    if _memory_set != [memory_mb]:
        z3.set_param("memory_max_size", memory_mb)
        _memory_set[:] = [memory_mb]


def _z3_value(z3: Any, sort: str, value: Value) -> Any:
    if sort == "Bool":
        return z3.BoolVal(bool(value))
    if sort == "Int":
        return z3.IntVal(int(value))
    return z3.RealVal(str(value))  # Fraction's str is `p/q` or `p`: exact


def _show_model(z3: Any, model: Any, consts: dict[str, Any] | None = None) -> str:
    names = consts or {d.name(): d() for d in model.decls() if d.arity() == 0}
    values: dict[str, Value] = {}
    for name, const in names.items():
        value = model.eval(const, model_completion=True)
        if z3.is_true(value) or z3.is_false(value):
            values[name] = z3.is_true(value)
        elif z3.is_int_value(value):
            values[name] = value.as_long()
        elif z3.is_rational_value(value):
            from fractions import Fraction

            values[name] = Fraction(value.numerator_as_long(), value.denominator_as_long())
        else:  # an algebraic number (x*x = 2): no exact answer form; show z3's decimal
            return f"{name} = {value.as_decimal(6)} (irrational)"
    return format_assignment(values)


def _resource_verdict(exc: Exception) -> Verdict:
    return Verdict.timeout(f"z3 gave up: {_z3_message(exc)}"[:500])


def _z3_message(exc: Exception) -> str:
    text = exc.args[0] if exc.args else str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())[:300]
