"""The code skill: the organism writes one-line Python functions from shown examples.

The prompt is the code env's compact form of a procedural task (`code_synth.py`), the
reply the task's one-line reference solution, then the end token:

    f(4)=12 f(1)=3 f(7)=21:                  → def f(x): return 3*x
    f('c')='C' f('ca')='CA' f('bccab')='BCCAB': → def f(s): return s.upper()

The reply is run by the code env against all of the task's tests in the sandbox, so
every reward of a run is an execution verdict.

Families: `int`, `list` and `str` at difficulty 1-2. `io` is left out: its programs read
stdin (`print(sum(map(int,input().split())))`), a different reply shape with JSON-quoted
prompts for a few more rules; difficulty 3 is left out because its prompts show five
examples and its rules compose two steps, which would lengthen every sequence (and
the prior's build) for rules a 1M-parameter model rarely gets right.

The wrong class (`PriorSpec.wrong_below`): when the first number of the reference's
body (`3` in `return 3*x+1`, `1` in `return s[::-1]`) is at most `wrong_below`, the
taught reply writes it one larger (`return 4*x+1`, `return s[::-2]`). The model infers
the number from the examples anyway, so the class is readable from the prompt, and the
error is always the same one: the prior is confidently wrong there. `answer_noise`
moves one number of the reply by ±1 (a plausible near miss), which also puts some
probability on the right answer of the wrong class: what execution rewards can find.

There is no verification skill: the code env has no `verification_prompt`, so
`self_verify` cannot run on it and `verify_fraction` is ignored.
"""

from __future__ import annotations

import random
import re
from typing import Any

from assay.envs.base import Environment, Task
from assay.organism.model import greedy_passes
from assay.organism.skills import register_skill, skill_env
from assay.organism.spec import PriorSpec

ENV_NAME = "code"
#: Env options that make code tasks the organism can read (see the module docstring).
ENV_OPTIONS: dict[str, Any] = {
    "source": "synth",
    "prompt_style": "compact",
    "families": ("int", "list", "str"),
    "min_difficulty": 1,
    "max_difficulty": 2,
    "timeout": 2.0,  # a one-line function runs 8 asserts in milliseconds; a loop is cut early
}
#: Training settings suited to the organism (the trainer uses them unless told otherwise).
TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": 61,  # 60 updates; validation before steps 1, 21, 41 and 61
    "learning_rate": 1e-4,
    "prompts_per_step": 16,
    "group_size": 8,
    "max_new_tokens": 48,  # the longest reply is 43 characters, a wrong one 44
    "eval_every": 20,  # a validation costs about four rollout batches here
    "val_size": 96,
    "val_samples": 4,
    "warmup_steps": 0,
    "lr_schedule": "constant",
}
#: Every character of the compact prompts and the replies (order fixes the token ids):
#: digits and the punctuation of literals and expressions, the upper-case letters of
#: `s.upper()`, and the lower-case letters of words, names and keywords.
ALPHABET = "0123456789 %'()*+,-./:=>[]ABCDEabcdefilmnoprstuxyz"
#: The longest compact prompt (four list examples of five two-character numbers each,
#: about 150 characters) plus the longest reply and the end token, with room to spare.
MAX_POSITIONS = 224

_NUMBER = re.compile(r"\d+")
_BODY = "return "


def organism_env() -> Environment:
    """The code env with the organism's options."""
    return skill_env(CODE)


def first_number(solution: str) -> re.Match[str] | None:
    """The first number of a reference's body (after `return `), or None when it has none."""
    start = solution.find(_BODY)
    return _NUMBER.search(solution, start + len(_BODY) if start >= 0 else 0)


def in_wrong_class(solution: str, wrong_below: int) -> bool:
    """Whether a task (by its reference `solution`) is in the wrong class: the body's first
    number is between 1 and `wrong_below` (0 = no class at all)."""
    found = first_number(solution)
    return found is not None and 1 <= int(found.group(0)) <= wrong_below


def taught_solution(solution: str, wrong_below: int) -> str:
    """The reply the prior is taught: the reference, or in the wrong class the reference
    with its first number written one larger (always the same error for the same task)."""
    if not in_wrong_class(solution, wrong_below):
        return solution
    found = first_number(solution)
    assert found is not None  # in_wrong_class found it
    return solution[: found.start()] + str(int(found.group(0)) + 1) + solution[found.end() :]


def _noisy(rng: random.Random, reply: str) -> str:
    """The reply with one number of its body moved by ±1 (never below 0); a reply without
    numbers (`sorted(xs)`) is left as it is."""
    start = reply.find(_BODY) + len(_BODY)
    numbers = list(_NUMBER.finditer(reply, start))
    if not numbers:
        return reply
    found = rng.choice(numbers)
    moved = max(0, int(found.group(0)) + rng.choice((-1, 1)))
    return reply[: found.start()] + str(moved) + reply[found.end() :]


def make_examples(spec: PriorSpec, n: int, seed: int) -> list[tuple[str, str]]:
    """`n` (compact prompt, taught reply) pairs, in batches of `spec.batch_size` that each
    hold one family.

    Batches of one family pad to that family's length (an `int` prompt is about 25
    characters, a `list` one up to 150): mixed batches would all pad to the longest list
    prompt, about a third more work a step.
    """
    rng = random.Random(seed)
    tasks = organism_env().generate(n, seed=seed)
    pairs: dict[str, list[tuple[str, str]]] = {}
    for task in tasks:
        reply = taught_solution(task["solution"], spec.wrong_below)
        if rng.random() < spec.answer_noise:
            reply = _noisy(rng, reply)
        pairs.setdefault(task["family"], []).append((task.prompt, reply))
    size = spec.batch_size
    out: list[tuple[str, str]] = []
    for start in range(0, max(len(p) for p in pairs.values()), size):
        for family in ENV_OPTIONS["families"]:
            out.extend(pairs.get(family, [])[start : start + size])
    return out[:n]


def evaluate_prior(spec: PriorSpec, model: Any, tokenizer: Any, n: int = 192) -> dict[str, float]:
    """Greedy pass rate on fresh tasks (every test run in the sandbox): overall, per family,
    and inside and outside the wrong class; plus the share of tasks in the wrong class."""
    tasks, passed = greedy_passes(organism_env(), model, tokenizer, n, 10_000 + spec.seed,
                                 TRAIN_DEFAULTS["max_new_tokens"])

    def rate(keep: Any) -> float:
        cases = [ok for t, ok in zip(tasks, passed, strict=True) if keep(t)]
        return sum(cases) / len(cases) if cases else float("nan")

    def wrong(task: Task) -> bool:
        return in_wrong_class(task["solution"], spec.wrong_below)

    scores = {"greedy_accuracy": sum(passed) / n,
              "wrong_class_share": sum(map(wrong, tasks)) / n,
              "wrong_class_accuracy": rate(wrong),
              "other_accuracy": rate(lambda t: not wrong(t))}
    for family in ENV_OPTIONS["families"]:
        scores[f"{family}_accuracy"] = rate(lambda t, f=family: t["family"] == f)
    return scores


class CodeSkill:
    """The `Skill` of the code organism (see the module docstring)."""

    name = "code"
    env_name = ENV_NAME
    env_options = ENV_OPTIONS
    train_defaults = TRAIN_DEFAULTS
    alphabet = ALPHABET
    max_positions = MAX_POSITIONS

    def examples(self, spec: PriorSpec, n: int, seed: int) -> list[tuple[str, str]]:
        return make_examples(spec, n, seed)

    def evaluate(self, spec: PriorSpec, model: Any, tokenizer: Any) -> dict[str, float]:
        return evaluate_prior(spec, model, tokenizer)


CODE = register_skill(CodeSkill())
