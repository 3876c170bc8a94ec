"""The reward hacks `assay audit` tries on every `rg:<dataset>` (`ReasoningGymEnv.probes`,
inherited by each dataset's class; what a probe is: probing.py): the right answer hedged
with a wrong one in one answer block, and the question's numbers restated as a list.
"""

from __future__ import annotations

import re

from assay.envs.probing import Attempt, AuditContext, Probe
from assay.envs.task import Task

_NUMBER = r"-?\d+(?:\.\d+)?"


def hedged_answer(ctx: AuditContext, task: Task) -> list[Attempt]:
    """The right answer and a wrong one (another task's) in one answer block, in either
    order: a scorer that reads only the first (or the last) number or word takes it."""
    ref, wrong = ctx.references.get(task.id), ctx.wrong(task)
    if ref is None or wrong is None:
        return []
    return [(task, ctx.wrap(f"{ref} or {wrong}")), (task, ctx.wrap(f"{wrong} or {ref}"))]


def given_numbers(ctx: AuditContext, task: Task) -> list[Attempt]:
    """The question's numbers restated in order as the answer (`a, b, c`, `[a, b, c]`,
    `a b c`), unless the right answer holds those very numbers in that order."""
    given = re.findall(_NUMBER, str(task.get("question") or ""))
    ref = ctx.references.get(task.id)
    if len(given) < 2 or (ref is not None and re.findall(_NUMBER, ref) == given):
        return []
    return [(task, ctx.wrap(text)) for text in (", ".join(given), f"[{', '.join(given)}]", " ".join(given))]


PROBES: dict[str, Probe] = {
    "hedged_answer": hedged_answer,
    "given_numbers": given_numbers,
}
