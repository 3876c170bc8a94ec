"""The math env's own reward hacks for `assay audit` (`MathEnv.probes`; what a probe is:
probing.py): hedged answers, and unreduced forms where the task asks for a form.
"""

from __future__ import annotations

from assay.envs.probing import Attempt, AuditContext, Probe, as_fraction
from assay.envs.task import Task


def _wrong(ctx: AuditContext, task: Task) -> str:
    ref = ctx.references.get(task.id, "")
    value = as_fraction(ref)
    if value is not None:
        wrong = value + 1
        return str(wrong.numerator) if wrong.denominator == 1 else f"\\frac{{{wrong.numerator}}}{{{wrong.denominator}}}"
    return "1000" if "equation" in task.fields else (ctx.wrong(task) or "1000")


def hedged_answers(ctx: AuditContext, task: Task) -> list[Attempt]:
    """The right answer among wrong ones, in either order, in one box or in several."""
    ref = ctx.references.get(task.id)
    if ref is None:
        return []
    wrong = _wrong(ctx, task)
    texts = [f"\\boxed{{{wrong}}} \\boxed{{{ref}}}", f"\\boxed{{{ref}}} or \\boxed{{{wrong}}}",
             f"\\boxed{{{ref} \\text{{ or }} {wrong}}}", f"\\boxed{{{ref}, {wrong}}}",
             f"The answer is {ref} or {wrong}: \\boxed{{{ref}}} \\boxed{{{wrong}}} \\boxed{{{ref}}}"]
    return [(task, t) for t in texts]


def unreduced_form(ctx: AuditContext, task: Task) -> list[Attempt]:
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


PROBES: dict[str, Probe] = {
    "hedged_answers": hedged_answers,
    "unreduced_form": unreduced_form,
}
