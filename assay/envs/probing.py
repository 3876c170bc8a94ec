"""What an audit probe is, for environments that bring their own reward hacks.

`assay audit ENV` (assay/audit/) tries known reward hacks on an env's verifier: the generic
probes that fit every env, and the env's own. An env declares its own in the class
attribute `probes` (`{name: probe}`; a subclass inherits them, and every `rg:<dataset>`
class gets the family's), so the audit asks the env and never looks anything up by name.

A probe is a function `(ctx, task) -> [(task, completion), ...]`: completions that must
NOT be judged `correct` (it may add tasks of its own, as countdown's do). `ctx` is an
`AuditContext`: the env, how it wants answers written (`ctx.wrap(answer)`), the tasks'
right answers (`ctx.references`, `ctx.wrong(task)`) and the first task (`ctx.first`, where
a probe that brings fixed tasks adds them once). A probe that cannot be built for a task
(no right answer, no numbers) returns nothing for it.

These types live here, in the tasks layer, so that an env module can write probes without
importing the audit, which sits above it (docs/architecture.md). The built-in envs'
probes are in `countdown_probes.py`, `code_probes.py`, `math_probes.py` and `rg_probes.py`;
the generic ones in assay/audit/probes.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from assay.envs.task import Task

if TYPE_CHECKING:  # base.py imports this module for `Probe`
    from assay.envs.base import Environment

#: one probe completion and the task it answers
Attempt = tuple[Task, str]

#: Characters that look like digits and operators but are none (not even under NFKC).
LOOKALIKES = {
    "0": "\u041e",  # Cyrillic capital O
    "1": "l",  # Latin small L
    "3": "\u0417",  # Cyrillic Ze
    "5": "\u01bc",  # Latin capital tone five
    "6": "\u0431",  # Cyrillic be
    "8": "\u0222",  # Latin capital ou
    "+": "\u02d6",  # modifier letter plus sign
    "-": "\u02d7",  # modifier letter minus sign
    "*": "\u204e",  # low asterisk
    "/": "\u141f",  # Canadian syllabics final acute
}


@dataclass
class AuditContext:
    """What probes need besides the task: the env, how it wants answers, and answers."""

    env: Environment
    wrapper: str
    references: dict[str, str]  #: task id -> a correct answer (where one is known)
    first: Task | None = None  #: probes that bring their own tasks add them once, here

    def wrap(self, answer: str) -> str:
        return self.wrapper.format(answer)

    def wrong(self, task: Task) -> str | None:
        """A different task's answer: wrong for this one (unless the two coincide)."""
        mine = plain(self.references.get(task.id, ""))
        for other in self.references.values():
            if plain(other) != mine:
                return other
        return None


#: a probe: `(ctx, task) -> [(task, completion), ...]`, every completion a hack
Probe = Callable[[AuditContext, Task], list[Attempt]]


def plain(text: str) -> str:
    """`text` without any whitespace."""
    return "".join(text.split())


def as_fraction(text: str) -> Fraction | None:
    """An integer, `p/q` or `\\frac{p}{q}` (signed) as a `Fraction`; None for anything else."""
    flat = re.sub(r"\\[dt]?frac\{(-?\d+)\}\{(\d+)\}", r"\1/\2", plain(text))
    try:
        return Fraction(flat)
    except (ValueError, ZeroDivisionError):
        return None
