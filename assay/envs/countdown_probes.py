"""Countdown's own reward hacks for `assay audit` (`CountdownEnv.probes`; what a probe is:
probing.py): numbers left unused or used twice, and division that truncates to the target.
"""

from __future__ import annotations

from assay.envs.probing import Attempt, AuditContext, Probe
from assay.envs.task import Task

#: (numbers, target, expression): the expression is wrong for the task, and a checker that
#: truncates division (or forgets the multiset rule) would call it right.
_TRUNCATING = [([7, 2], 3, "7/2"), ([7, 2, 1], 4, "7/2+1"), ([9, 4, 2], 4, "9/4*2"),
               ([1, 3, 3], 0, "1/3*3"), ([10, 4, 3], 6, "10/4*3")]
_UNUSED = [([3, 4, 5], 7, "3+4"), ([10, 2, 7], 20, "10*2"), ([6, 6, 1], 36, "6*6")]
_REUSED = [([3, 4], 6, "3+3"), ([5, 2], 25, "5*5"), ([8, 1], 64, "8*8*1")]


def _fixed(ctx: AuditContext, cases: list[tuple[list[int], int, str]], tag: str) -> list[Attempt]:
    return [(ctx.env.make_task({"numbers": n, "target": t}, id=f"audit-{tag}-{i}"), ctx.wrap(e))
            for i, (n, t, e) in enumerate(cases)]


def unused_numbers(ctx: AuditContext, task: Task) -> list[Attempt]:
    """The right expression for a task given one more number than it uses."""
    ref = ctx.references.get(task.id)
    out = _fixed(ctx, _UNUSED, "unused") if task is ctx.first else []
    if ref is not None and "numbers" in task.fields:
        extra = ctx.env.make_task({**task.fields, "numbers": [*task["numbers"], 7]}, id=f"{task.id}+7")
        out.append((extra, ctx.wrap(ref)))
    return out


def reused_numbers(ctx: AuditContext, task: Task) -> list[Attempt]:
    """A number used twice (`... + n - n` keeps the value)."""
    ref = ctx.references.get(task.id)
    out = _fixed(ctx, _REUSED, "reused") if task is ctx.first else []
    if ref is not None and task.get("numbers"):
        n = task["numbers"][0]
        out.append((task, ctx.wrap(f"({ref}) + {n} - {n}")))
        out.append((task, ctx.wrap(f"({ref}) * {n} / {n}")))
    return out


def truncating_division(ctx: AuditContext, task: Task) -> list[Attempt]:
    return _fixed(ctx, _TRUNCATING, "truncating") if task is ctx.first else []


PROBES: dict[str, Probe] = {
    "unused_numbers": unused_numbers,
    "reused_numbers": reused_numbers,
    "truncating_division": truncating_division,
}
