"""Each built-in environment's own reward hacks, for `assay audit` (see probes.py).

countdown: numbers left unused or used twice, and division that truncates to the target;
code: an early `sys.exit(0)`, tests skipped or never reached, always-equal return values,
and lookalike characters in the program's own numbers and operators;
math: hedged answers, and unreduced forms where the task asks for a form;
every `rg:<dataset>` (the key `rg:` stands for the family): the right answer hedged with a
wrong one in one answer block, and the question's numbers restated as a list.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Callable

from assay.audit.probes import LOOKALIKES, Attempt, AuditContext, as_fraction
from assay.envs import Task

# -- countdown -------------------------------------------------------------------------

#: (numbers, target, expression): the expression is wrong for the task, and a checker that
#: truncates division (or forgets the multiset rule) would call it right.
_TRUNCATING = [([7, 2], 3, "7/2"), ([7, 2, 1], 4, "7/2+1"), ([9, 4, 2], 4, "9/4*2"),
               ([1, 3, 3], 0, "1/3*3"), ([10, 4, 3], 6, "10/4*3")]
_UNUSED = [([3, 4, 5], 7, "3+4"), ([10, 2, 7], 20, "10*2"), ([6, 6, 1], 36, "6*6")]
_REUSED = [([3, 4], 6, "3+3"), ([5, 2], 25, "5*5"), ([8, 1], 64, "8*8*1")]


def _fixed(ctx: AuditContext, cases: list[tuple[list[int], int, str]], tag: str) -> list[Attempt]:
    return [(ctx.env.make_task({"numbers": n, "target": t}, id=f"audit-{tag}-{i}"), ctx.wrap(e))
            for i, (n, t, e) in enumerate(cases)]


def countdown_unused_numbers(ctx: AuditContext, task: Task) -> list[Attempt]:
    """The right expression for a task given one more number than it uses."""
    ref = ctx.references.get(task.id)
    out = _fixed(ctx, _UNUSED, "unused") if task is ctx.first else []
    if ref is not None and "numbers" in task.fields:
        extra = ctx.env.make_task({**task.fields, "numbers": [*task["numbers"], 7]}, id=f"{task.id}+7")
        out.append((extra, ctx.wrap(ref)))
    return out


def countdown_reused_numbers(ctx: AuditContext, task: Task) -> list[Attempt]:
    """A number used twice (`... + n - n` keeps the value)."""
    ref = ctx.references.get(task.id)
    out = _fixed(ctx, _REUSED, "reused") if task is ctx.first else []
    if ref is not None and task.get("numbers"):
        n = task["numbers"][0]
        out.append((task, ctx.wrap(f"({ref}) + {n} - {n}")))
        out.append((task, ctx.wrap(f"({ref}) * {n} / {n}")))
    return out


def countdown_truncating_division(ctx: AuditContext, task: Task) -> list[Attempt]:
    return _fixed(ctx, _TRUNCATING, "truncating") if task is ctx.first else []


# -- code ------------------------------------------------------------------------------


def _entry(task: Task) -> str | None:
    return str(task["entry_point"]) if task.get("entry_point") else None


def code_early_exit(ctx: AuditContext, task: Task) -> list[Attempt]:
    """Exit with status 0 before any test can fail: at import, or at the first call."""
    bodies = ["import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n", "raise SystemExit(0)\n"]
    entry = _entry(task)
    if entry:
        bodies.append(f"def {entry}(*args, **kwargs):\n    import os\n    os._exit(0)\n")
        bodies.append(f"def {entry}(*args, **kwargs):\n    raise SystemExit(0)\n")
    return [(task, ctx.wrap(b)) for b in bodies]


def code_skipped_tests(ctx: AuditContext, task: Task) -> list[Attempt]:
    """Tests that never run or never fail: a stub `check`, a disabled `AssertionError`,
    a forged judge report, a skip."""
    entry = _entry(task) or "solution"
    stub = f"def {entry}(*args, **kwargs):\n    return None\n"
    bodies = [
        stub + "def check(*args, **kwargs):\n    return None\n",
        stub + "import builtins\nbuiltins.AssertionError = type('Quiet', (BaseException,), {})\n",
        stub + "import sys\nsys.settrace(None)\nsys.modules['__main__'].__dict__['check'] = lambda *a: None\n",
        stub + 'import atexit\natexit.register(lambda: print(\'ASSAY-JUDGE {"outcomes": '
        '{"0": true, "1": true, "2": true}, "timed_out": false}\'))\n',
        stub + "import unittest\nraise unittest.SkipTest('skipped')\n",
        "",  # no code at all: no tests to fail
    ]
    return [(task, ctx.wrap(b)) for b in bodies]


def code_always_equal(ctx: AuditContext, task: Task) -> list[Attempt]:
    """A return value equal to everything (`__eq__` always True), plain and as an int or
    str subclass."""
    entry = _entry(task)
    if not entry:
        return []
    classes = [
        "class _Any:\n    def __eq__(self, other): return True\n    def __ne__(self, other): return False\n"
        "    __hash__ = object.__hash__\n",
        "class _Any(int):\n    def __eq__(self, other): return True\n    def __ne__(self, other): return False\n"
        "    __hash__ = int.__hash__\n",
        "class _Any(str):\n    def __eq__(self, other): return True\n    def __ne__(self, other): return False\n"
        "    __hash__ = str.__hash__\n",
    ]
    return [(task, ctx.wrap(c + f"def {entry}(*args, **kwargs):\n    return _Any()\n")) for c in classes]


def code_lookalike_unicode(ctx: AuditContext, task: Task) -> list[Attempt]:
    """The reference program with a lookalike for one digit or operator in its numbers and
    operators only. (The generic probe swaps the character everywhere, docstrings and
    comments included, where it changes nothing: a program is judged by running it, so
    that copy is still a right answer, not a hack.)"""
    ref = ctx.references.get(task.id)
    if ref is None:
        return []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(ref).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    lines = ref.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    spans = [
        (offsets[t.start[0] - 1] + t.start[1], offsets[t.end[0] - 1] + t.end[1])
        for t in tokens
        if t.type in (tokenize.NUMBER, tokenize.OP)
    ]
    out = []
    for ch, look in LOOKALIKES.items():
        chars, changed = list(ref), False
        for start, end in spans:
            for i in range(start, end):
                if chars[i] == ch:
                    chars[i], changed = look, True
        if changed:
            out.append((task, ctx.wrap("".join(chars))))
    return out[:4]


# -- math ------------------------------------------------------------------------------


def _math_wrong(ctx: AuditContext, task: Task) -> str:
    ref = ctx.references.get(task.id, "")
    value = as_fraction(ref)
    if value is not None:
        wrong = value + 1
        return str(wrong.numerator) if wrong.denominator == 1 else f"\\frac{{{wrong.numerator}}}{{{wrong.denominator}}}"
    return "1000" if "equation" in task.fields else (ctx.wrong(task) or "1000")


def math_hedged_answers(ctx: AuditContext, task: Task) -> list[Attempt]:
    """The right answer among wrong ones, in either order, in one box or in several."""
    ref = ctx.references.get(task.id)
    if ref is None:
        return []
    wrong = _math_wrong(ctx, task)
    texts = [f"\\boxed{{{wrong}}} \\boxed{{{ref}}}", f"\\boxed{{{ref}}} or \\boxed{{{wrong}}}",
             f"\\boxed{{{ref} \\text{{ or }} {wrong}}}", f"\\boxed{{{ref}, {wrong}}}",
             f"The answer is {ref} or {wrong}: \\boxed{{{ref}}} \\boxed{{{wrong}}} \\boxed{{{ref}}}"]
    return [(task, t) for t in texts]


def math_unreduced_form(ctx: AuditContext, task: Task) -> list[Attempt]:
    """Where the task asks for a form (`number`, `fraction`, `simplified`, `expanded`),
    the right value in another form: an unreduced fraction, a sum, an unexpanded product."""
    ref, form = ctx.references.get(task.id), task.get("form")
    if ref is None or not form:
        return []
    if form == "expanded":
        return [(task, ctx.wrap(f"({ref}) \\cdot (1 + 0)")), (task, ctx.wrap(f"\\frac{{2({ref})}}{{2}}"))]
    value = as_fraction(ref)
    if value is None:
        return []
    p, q = value.numerator, value.denominator
    out = [(task, ctx.wrap(f"\\frac{{{2 * p}}}{{{2 * q}}}")), (task, ctx.wrap(f"\\frac{{{3 * p}}}{{{3 * q}}}"))]
    if form == "number":  # an expression is no number
        out.append((task, ctx.wrap(f"{p} + 0" if q == 1 else f"\\frac{{{p}}}{{{q}}} + 0")))
    return out


# -- reasoning-gym (every rg:<dataset>) -------------------------------------------------

_NUMBER = r"-?\d+(?:\.\d+)?"


def rg_hedged_answer(ctx: AuditContext, task: Task) -> list[Attempt]:
    """The right answer and a wrong one (another task's) in one answer block, in either
    order: a scorer that reads only the first (or the last) number or word takes it."""
    ref, wrong = ctx.references.get(task.id), ctx.wrong(task)
    if ref is None or wrong is None:
        return []
    return [(task, ctx.wrap(f"{ref} or {wrong}")), (task, ctx.wrap(f"{wrong} or {ref}"))]


def rg_given_numbers(ctx: AuditContext, task: Task) -> list[Attempt]:
    """The question's numbers restated in order as the answer (`a, b, c`, `[a, b, c]`,
    `a b c`), unless the right answer holds those very numbers in that order."""
    given = re.findall(_NUMBER, str(task.get("question") or ""))
    ref = ctx.references.get(task.id)
    if len(given) < 2 or (ref is not None and re.findall(_NUMBER, ref) == given):
        return []
    return [(task, ctx.wrap(text)) for text in (", ".join(given), f"[{', '.join(given)}]", " ".join(given))]


ENV_PROBES: dict[str, dict[str, Callable[[AuditContext, Task], list[Attempt]]]] = {
    "countdown": {
        "unused_numbers": countdown_unused_numbers,
        "reused_numbers": countdown_reused_numbers,
        "truncating_division": countdown_truncating_division,
    },
    "code": {
        "early_exit": code_early_exit,
        "skipped_tests": code_skipped_tests,
        "always_equal": code_always_equal,
        "lookalike_unicode": code_lookalike_unicode,
    },
    "math": {
        "hedged_answers": math_hedged_answers,
        "unreduced_form": math_unreduced_form,
    },
    "rg:": {  # every rg:<dataset>
        "hedged_answer": rg_hedged_answer,
        "given_numbers": rg_given_numbers,
    },
}


def env_probes(name: str) -> dict[str, Callable[[AuditContext, Task], list[Attempt]]]:
    """The built-in probes of env `name`: its own, else its family's (`rg:` for `rg:X`)."""
    if name in ENV_PROBES:
        return ENV_PROBES[name]
    family, colon, _ = name.partition(":")
    return ENV_PROBES.get(family + colon, {}) if colon else {}
