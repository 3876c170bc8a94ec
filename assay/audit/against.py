"""A second checker on the audit's pairs: `assay audit math --against math-verify`.

On every (task, completion) pair the audit verified, where the task has a gold `answer`,
math-verify (Hugging Face's checker) judges too. The result counts where the two agree,
where only one accepts (with examples), and, on the pairs whose truth is known by
construction, each checker's false positives (a probe accepted) and false negatives (a
task's own right answer rejected).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from assay.envs import Environment, Task
from assay.errors import AssayError
from assay.verifiers import Verdict

CHECKERS = ("math-verify",)
EXAMPLES = 10
TIMEOUT = 2  #: seconds math-verify may spend parsing or comparing one answer
#: seconds one pair may take in all (two parses and a comparison, each of TIMEOUT): the
#: hard limit. math-verify's own limits are SIGALRM ones, and its LaTeX parser can swallow
#: the alarm's exception and parse on for many minutes; the pair's process is then killed.
HARD_LIMIT = 3 * TIMEOUT + 2


def agreement(checker: str, judged: list[tuple[str, tuple[Task, str], Verdict]],
              env: Environment | None = None) -> dict[str, Any]:
    """Compare assay's verdicts in `judged` [(probe, (task, completion), verdict)] with
    `checker`, which reads what `checker_text(env, completion)` gives it."""
    from assay.verifiers.timelimit import BoundedPool, Failure

    judge = _checker(checker)
    out: dict[str, Any] = {
        "checker": checker, "pairs": 0, "agree": 0,
        "only_assay_accepts": {"count": 0, "examples": []},
        "only_checker_accepts": {"count": 0, "examples": []},
        "false_positives": {"assay": 0, checker: 0},
        "false_negatives": {"assay": 0, checker: 0},
        #: pairs the checker could not judge within HARD_LIMIT, or crashed on: counted as
        #: rejections (as its own timeouts are), and here so that they are seen
        "checker_failures": {"timeout": 0, "error": 0},
        "by_probe": {},
    }
    labelled = [  # math-verify needs a gold answer
        (probe, (task, completion), verdict)
        for probe, (task, completion), verdict in judged
        if has_gold(task)
    ]
    with BoundedPool(workers=max(1, min(4, os.cpu_count() or 1)), timeout=HARD_LIMIT) as pool:
        answers = pool.map(judge, [(str(task["answer"]), checker_text(env, completion))
                                   for _, (task, completion), _ in labelled])
    for (probe, (task, completion), verdict), theirs in zip(labelled, answers, strict=True):
        if isinstance(theirs, Failure):
            out["checker_failures"][theirs.kind] += 1
            theirs = False
        ours = verdict.correct
        out["pairs"] += 1
        out["agree"] += theirs == ours
        if ours != theirs:
            key = "only_assay_accepts" if ours else "only_checker_accepts"
            out[key]["count"] += 1
            counts = out["by_probe"].setdefault(probe, {"only_assay_accepts": 0, "only_checker_accepts": 0})
            counts[key] += 1
            # examples from as many probes as possible: the first of each probe, up to EXAMPLES
            if counts[key] == 1 and len(out[key]["examples"]) < EXAMPLES:
                out[key]["examples"].append({
                    "probe": probe, "task_id": task.id, "gold": str(task["answer"]),
                    "completion": completion[:300], "assay": verdict.status, "detail": verdict.detail[:200],
                })
        if probe == "reference":
            out["false_negatives"]["assay"] += not ours
            out["false_negatives"][checker] += not theirs
        else:
            out["false_positives"]["assay"] += ours
            out["false_positives"][checker] += theirs
    return out


def checker_text(env: Environment | None, completion: str) -> str:
    """What the checker reads of `completion`: the whole of it where the env's answers are
    in a form math-verify finds itself (the math env's `\\boxed{}`: then the two checkers'
    extraction is compared too); otherwise the answer the env extracts (reasoning-gym's
    `<answer>` tags, for one, are not maths: math-verify would miss every answer in them),
    and nothing where the env extracts none."""
    if env is None or getattr(getattr(env, "options", None), "answer_format", None) == "boxed":
        return completion
    return env.extract(completion) or ""


def has_gold(task: Task) -> bool:
    """Whether the checker can judge pairs on `task`: it has a gold `answer` to compare with
    (countdown's tasks, math's equations and code's have none)."""
    return "answer" in task.fields


def _checker(name: str):
    """The checker's judge, `judge(gold, completion) -> bool` (a module-level function, so
    that `BoundedPool` can send it to its workers)."""
    if name not in CHECKERS:
        raise AssayError(f"--against: unknown checker {name!r} (known: {', '.join(CHECKERS)})")
    try:
        import math_verify  # noqa: F401 - imported before the workers fork
    except ImportError:
        raise AssayError("--against math-verify needs the math-verify package: pip install math-verify") from None
    # math-verify logs every parse that runs out of time (the huge-answer probes do) with the
    # whole input: its verdict (no) is what counts here, not the log.
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    return math_verify_judge


def math_verify_judge(gold: str, completion: str) -> bool:
    """Whether math-verify accepts `completion` against `gold` (its own failures: no)."""
    from math_verify import parse, verify

    try:
        target = parse(gold if "$" in gold or "\\boxed" in gold else f"${gold}$", parsing_timeout=TIMEOUT)
        answer = parse(completion, parsing_timeout=TIMEOUT)
        return bool(verify(target, answer, timeout_seconds=TIMEOUT))
    except Exception:  # math-verify's own failure (a timeout, a parse error) is a no
        return False
