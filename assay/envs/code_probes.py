"""The code env's own reward hacks for `assay audit` (`CodeEnv.probes`; what a probe is:
probing.py): an early `sys.exit(0)`, tests skipped or never reached, always-equal return
values, and lookalike characters in the program's own numbers and operators.
"""

from __future__ import annotations

import io
import tokenize

from assay.envs.probing import LOOKALIKES, Attempt, AuditContext, Probe
from assay.envs.task import Task


def _entry(task: Task) -> str | None:
    return str(task["entry_point"]) if task.get("entry_point") else None


def early_exit(ctx: AuditContext, task: Task) -> list[Attempt]:
    """Exit with status 0 before any test can fail: at import, or at the first call."""
    bodies = ["import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n", "raise SystemExit(0)\n"]
    entry = _entry(task)
    if entry:
        bodies.append(f"def {entry}(*args, **kwargs):\n    import os\n    os._exit(0)\n")
        bodies.append(f"def {entry}(*args, **kwargs):\n    raise SystemExit(0)\n")
    return [(task, ctx.wrap(b)) for b in bodies]


def skipped_tests(ctx: AuditContext, task: Task) -> list[Attempt]:
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


def always_equal(ctx: AuditContext, task: Task) -> list[Attempt]:
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


def lookalike_unicode(ctx: AuditContext, task: Task) -> list[Attempt]:
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


#: `lookalike_unicode` takes the place of the generic probe of that name
PROBES: dict[str, Probe] = {
    "early_exit": early_exit,
    "skipped_tests": skipped_tests,
    "always_equal": always_equal,
    "lookalike_unicode": lookalike_unicode,
}
