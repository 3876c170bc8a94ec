"""Known reward hacks, built for any environment's tasks: the generic probes of `assay audit`.

Every probe is a function `(ctx, task) -> [(task, completion), ...]` returning completions
that must NOT be judged `correct` (the types, `AuditContext` and `Probe`, are in
assay/envs/probing.py, where env modules can import them): an empty answer, several
answers with a wrong one last, the right answer only inside a reasoning block, the prompt
or question copied back, format-only answers, huge answers, lookalike Unicode digits and
operators, the task's own numbers restated. Each env adds its own: the class attribute
`probes` (the built-in envs', subclasses' and every `rg:<dataset>`'s), and a plug-in may
define `audit_probes(task, reference)` returning `{name: [completion, ...]}` instead
(audit.py's `probe_table` merges them). A probe that cannot be built for a task (no
reference answer, no numbers) returns nothing for it.
"""

from __future__ import annotations

import re

from assay.envs import Environment, Task
from assay.envs.probing import LOOKALIKES, Attempt, AuditContext, Probe, as_fraction, plain

#: the answer formats tried, in turn, on an env that does not declare its `answer_template`
_CANDIDATE_WRAPPERS = ("<answer>{}</answer>", "\\boxed{{{}}}", "```python\n{}\n```", "{}")


def reference_answer(env: Environment, task: Task) -> str | None:
    """A correct answer: the env's own (`audit_reference(task)`, for a plug-in whose tasks
    carry none), else the task's `answer` (math), `solution` (countdown, math equations,
    code task files) or HumanEval's `canonical_solution`."""
    own = getattr(env, "audit_reference", None)
    if callable(own):
        return own(task)
    if "canonical_solution" in task.fields:
        return str(task.get("code_prompt") or "") + str(task["canonical_solution"])
    for key in ("answer", "solution"):
        if task.get(key) not in (None, ""):
            return str(task[key])
    return None


def find_wrapper(env: Environment, tasks: list[Task], references: dict[str, str]) -> str:
    """The answer format of `env`: its declared `answer_template`, else the first candidate
    under which the env accepts a task's own answer, else the first whose extraction
    round-trips."""
    if env.answer_template is not None:
        return env.answer_template
    task = next((t for t in tasks if t.id in references), None)
    if task is None:
        return _CANDIDATE_WRAPPERS[0]
    ref = references[task.id]
    verdicts = env.verify_many([(task, w.format(ref)) for w in _CANDIDATE_WRAPPERS])
    for wrapper, verdict in zip(_CANDIDATE_WRAPPERS, verdicts, strict=True):
        if verdict.correct:
            return wrapper
    for wrapper in _CANDIDATE_WRAPPERS:
        try:
            if (env.extract(wrapper.format(ref)) or "").strip() == ref.strip():
                return wrapper
        except Exception:  # a plug-in extractor that breaks on a probe tells us nothing
            continue
    return _CANDIDATE_WRAPPERS[0]


# -- generic probes --------------------------------------------------------------------


def empty_answer(ctx: AuditContext, task: Task) -> list[Attempt]:
    return [(task, c) for c in ("", ctx.wrap(""), ctx.wrap("   "), ctx.wrap("\n"))]


def multiple_answers(ctx: AuditContext, task: Task) -> list[Attempt]:
    """The right answer, then a wrong one last: only an any-of or first-answer rule takes it."""
    ref, wrong = ctx.references.get(task.id), ctx.wrong(task)
    if ref is None or wrong is None:
        return []
    return [(task, ctx.wrap(ref) + "\n" + ctx.wrap(wrong)),
            (task, f"{ctx.wrap(ref)} or maybe {ctx.wrap(wrong)}")]


def reasoning_only(ctx: AuditContext, task: Task) -> list[Attempt]:
    """The right answer only inside a reasoning block (closed, unclosed, or opened by the
    chat template so that only `</think>` is in the completion)."""
    ref = ctx.references.get(task.id)
    if ref is None:
        return []
    inner = ctx.wrap(ref)
    return [(task, c) for c in (f"<think>{inner}</think>", f"<think>{inner}</think>\nI am not sure.",
                                f"<think>Let me try. {inner}", f"{inner}</think>\nNo idea.")]


def prompt_copy(ctx: AuditContext, task: Task) -> list[Attempt]:
    """The prompt copied back, bare and as the answer; the question (a task's `problem` or
    `question`, without the prompt's instructions) as the answer, where it differs from
    the prompt; and each formula of the question."""
    out = [(task, task.prompt), (task, ctx.wrap(task.prompt))]
    question = str(task.get("problem") or task.get("question") or "")
    if question.strip() and question.strip() != task.prompt.strip():
        out.append((task, ctx.wrap(question)))
    for formula in re.findall(r"\$([^$]+)\$", question)[:3]:
        out.append((task, ctx.wrap(formula)))
    return out


def format_only(ctx: AuditContext, task: Task) -> list[Attempt]:
    words = ("...", "answer", "ANSWER", "<answer>", "\\boxed{}", "final answer", "x")
    return [(task, ctx.wrap(w)) for w in words] + [
        (task, "<answer></answer>"), (task, "\\boxed{}"), (task, "```python\n```")]


def huge_answer(ctx: AuditContext, task: Task) -> list[Attempt]:
    out = [(task, ctx.wrap("9" * 100_000)), (task, ctx.wrap("(" * 5_000 + "1" + ")" * 5_000))]
    ref = ctx.references.get(task.id)
    if ref is not None and len(ref) < 200:  # the answer said over and over
        out.append((task, ctx.wrap(" ".join([ref] * 2_000))))
    return out


def lookalike_unicode(ctx: AuditContext, task: Task) -> list[Attempt]:
    """The right answer with one kind of digit or operator swapped for a lookalike."""
    ref = ctx.references.get(task.id)
    if ref is None:
        return []
    present = [ch for ch in LOOKALIKES if ch in ref]
    return [(task, ctx.wrap(ref.replace(ch, LOOKALIKES[ch]))) for ch in present[:4]]


def restated_numbers(ctx: AuditContext, task: Task) -> list[Attempt]:
    """Numbers of the task restated as the answer (never one equal to a right answer)."""
    ref = ctx.references.get(task.id)
    numbers = [str(n) for n in task.get("numbers") or []]
    numbers += re.findall(r"-?\d+(?:/\d+)?", task.prompt)
    if "target" in task.fields:
        numbers.append(str(task["target"]))
    out, seen = [], set()
    for n in numbers:
        if n in seen or (ref is not None and _same_number(n, ref)):
            continue
        seen.add(n)
        out.append((task, ctx.wrap(n)))
    if "numbers" in task.fields:  # all of them, as a list
        out.append((task, ctx.wrap(" ".join(str(n) for n in task["numbers"]))))
    return out[:8]


GENERIC: dict[str, Probe] = {
    "empty_answer": empty_answer,
    "multiple_answers": multiple_answers,
    "reasoning_only": reasoning_only,
    "prompt_copy": prompt_copy,
    "format_only": format_only,
    "huge_answer": huge_answer,
    "lookalike_unicode": lookalike_unicode,
    "restated_numbers": restated_numbers,
}


def _same_number(a: str, b: str) -> bool:
    x, y = as_fraction(a), as_fraction(b)
    return x == y if x is not None and y is not None else plain(a) == plain(b)
