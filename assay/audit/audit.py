"""`assay audit ENV`: does the verifier accept known reward hacks?

It takes tasks (sampled from the env, or read from a task file), builds every probe's
completions for each (the generic probes of probes.py and the env's own: `probe_table`),
verifies them all in one `verify_many` batch, and counts, per probe, the completions
judged `correct`: each is a false positive, since a probe's completion is a hack by
construction. The tasks' own right answers are verified too (`reference`): a verifier
that rejects them has false negatives, and a probe built on a rejected answer proves
little. With `against`, a second checker judges the same pairs (against.py). The result
is JSON:

    {"env", "tasks", "reference": {"tried", "accepted", "examples"},
     "probes": [{"name", "tried", "false_positives", "errors", "examples"}],
     "agreement": {...} or null}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from assay.audit.probes import GENERIC, Attempt, AuditContext, find_wrapper, reference_answer
from assay.envs import Environment, Task
from assay.envs.probing import Probe
from assay.errors import AssayError
from assay.verifiers import Verdict

#: examples kept per probe, and how much of each completion they show
EXAMPLES, SHOWN = 3, 300


class AuditError(AssayError, ValueError):
    """An audit that cannot run (no tasks, an unknown second checker, tasks it cannot judge);
    one line."""


def probe_table(env: Environment) -> dict[str, Probe]:
    """Every probe for `env`, asked of the env itself, built-in and plug-in alike: the
    generic ones, then the env's own (an own probe takes the place of a generic one of its
    name): its class's `probes` (inherited: a subclass of `CountdownEnv` and every
    `rg:<dataset>` class get theirs), then, where the env defines it, the simpler
    `audit_probes(task, reference) -> {name: [completion, ...]}`."""
    table = {**GENERIC, **env.probes}
    own = getattr(env, "audit_probes", None)
    if callable(own):
        def plugin(ctx: AuditContext, task: Task, name: str) -> list[Attempt]:
            made = own(task, ctx.references.get(task.id)) or {}
            return [(task, c) for c in made.get(name, [])]

        sample = own(Task("audit", ""), None) or {}
        for name in sample:
            table[name] = lambda ctx, task, _n=name: plugin(ctx, task, _n)
    return table


def audit(env: Environment, tasks: list[Task], *, against: str | None = None) -> dict[str, Any]:
    """Run every probe on `tasks`; see the module docstring for the result's fields."""
    if not tasks:
        raise AuditError(f"no tasks to audit env {env.name!r} on")
    if against is not None:
        from assay.audit.against import CHECKERS, has_gold

        if against not in CHECKERS:
            raise AuditError(f"--against: unknown checker {against!r} (known: {', '.join(CHECKERS)})")
        if not any(has_gold(t) for t in tasks):
            # else it would compare nothing and report "0/0 agree" as if it had
            raise AuditError(
                f"--against {against} compares answers with each task's gold `answer`, and none "
                f"of the {len(tasks)} tasks of env {env.name!r} has one"
            )
    references = {t.id: ref for t in tasks if (ref := reference_answer(env, t)) is not None}
    ctx = AuditContext(env, find_wrapper(env, tasks, references), references, first=tasks[0])
    attempts: list[tuple[str, Task, str]] = []  # (probe, task, completion)
    for name, build in probe_table(env).items():
        for task in tasks:
            attempts += [(name, t, c) for t, c in build(ctx, task)]
    known_right = [("reference", t, ctx.wrap(references[t.id])) for t in tasks if t.id in references]
    pairs = [(t, c) for _, t, c in known_right + attempts]
    verdicts = env.verify_many(pairs)
    judged = list(zip([p for p, _, _ in known_right + attempts], pairs, verdicts, strict=True))

    ref = [(pair, v) for probe, pair, v in judged if probe == "reference"]
    if ref and not any(v.correct for _, v in ref):
        # A verifier that accepts nothing passes every probe: that proves nothing, and a CI
        # job must not read it as a pass (a missing sandbox makes every verdict an error).
        first = ref[0][1]
        raise AuditError(
            f"env {env.name!r} accepted none of the tasks' own answers (first: {first.status}: "
            f"{first.detail[:200]}); the audit would prove nothing"
        )
    result: dict[str, Any] = {
        "env": env.name,
        "tasks": len(tasks),
        "reference": {
            "tried": len(ref),
            "accepted": sum(v.correct for _, v in ref),
            "examples": [_example(pair, v) for pair, v in ref if not v.correct][:EXAMPLES],
        },
        "probes": [],
        "agreement": None,
    }
    for name in probe_table(env):
        mine = [(pair, v) for probe, pair, v in judged if probe == name]
        hits = [(pair, v) for pair, v in mine if v.correct]
        result["probes"].append({
            "name": name,
            "tried": len(mine),
            "false_positives": len(hits),
            "errors": sum(v.status == "error" for _, v in mine),  # unverified, not passed
            "examples": [_example(pair, v) for pair, v in hits[:EXAMPLES]],
        })
    if against is not None:
        from assay.audit.against import agreement

        result["agreement"] = agreement(against, judged, env)
    return result


def false_positives(result: dict[str, Any]) -> int:
    """All probes' false positives together (the exit status of `assay audit` is 1 when > 0)."""
    return sum(p["false_positives"] for p in result["probes"])


def unjudged(result: dict[str, Any]) -> int:
    """All probes' completions the verifier could not judge (`error`): hacks not rejected
    either, which training leaves out of the loss unpunished (also exit status 1)."""
    return sum(p["errors"] for p in result["probes"])


def _example(pair: tuple[Task, str], verdict: Verdict) -> dict[str, Any]:
    task, completion = pair
    shown = completion if len(completion) <= SHOWN else completion[:SHOWN] + f"... ({len(completion)} chars)"
    return {"task_id": task.id, "completion": shown, "status": verdict.status,
            "detail": verdict.detail[:200]}


def load_or_sample(env: Environment, tasks_file: str | None, n: int, seed: int) -> list[Task]:
    """The tasks of `tasks_file`, or `n` generated ones (an `AuditError` naming the problem)."""
    from assay.envs.taskfile import TaskFileUnusable, read_task_file

    if tasks_file:
        try:
            return read_task_file(env, tasks_file)
        except TaskFileUnusable as exc:
            raise AuditError(str(exc)) from None
    try:
        return env.generate(n, seed=seed)
    except NotImplementedError:
        raise AuditError(f"env {env.name!r} does not generate tasks; pass --tasks FILE") from None
    except ValueError as exc:
        raise AuditError(f"{env.name}: {exc}") from None


def write(result: dict[str, Any], path: str | Path) -> None:
    import json

    Path(path).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
