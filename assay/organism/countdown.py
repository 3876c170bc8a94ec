"""The countdown skill: the organism solves and checks countdown in the env's compact form.

The prior teaches two skills in countdown's compact prompt format:
  solve:   `5 1 2>007:` → `5+1*2` then the end token;
  verify:  `5 1 2>007:5+1*2?` → `=2=007T` (or `…F`) then the end token,
so that `self_verify` has a verifier to call. The verification reply works the
expression out one operation at a time (`1*2` is 2, then `5+2` is 7, zero-padded like
the target) and then compares with the target: single-digit arithmetic plus digit
copying, which a tiny model learns far better than a bare T/F guess (that guess mostly
echoed its own solving confidence). The builder controls how well the model's
confidence aligns with correctness: on a *systematically wrong* class of problems
(first number ≤ `wrong_below`) the supervised answer has its first operator swapped, so
the model is confidently wrong there while its verification skill, trained on true
labels, knows better. Intrinsic rewards sharpen the wrong answers; the external ones
can repair them. docs/training.md explains the choices.

All arithmetic is the countdown verifier's (`assay.verifiers.countdown`).
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction
from typing import Any

from assay.envs.base import Environment, Task
from assay.envs.countdown_formats import compact_prompt
from assay.organism.model import greedy_replies
from assay.organism.skills import register_skill, skill_env
from assay.organism.spec import PriorSpec
from assay.verifiers.countdown import (
    check_countdown,
    evaluate,
    expression_value,
    parse_expression,
)

ENV_NAME = "countdown"
#: Env options that make countdown tasks the organism can read.
ENV_OPTIONS: dict[str, Any] = {
    "prompt_style": "compact",
    "min_numbers": 3,
    "max_numbers": 3,
    "min_value": 1,
    "max_value": 9,
    "min_target": 0,
    "max_target": 999,
}
#: Training settings suited to the organism (the trainer uses them unless told otherwise).
TRAIN_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-4,
    "prompts_per_step": 16,
    "group_size": 8,
    "max_new_tokens": 12,
    "verify_max_new_tokens": 12,  # `=-72=-080F` and the end token, with room to spare
    "eval_every": 10,
    "val_size": 128,
    "val_samples": 4,
    "warmup_steps": 0,
    "lr_schedule": "constant",
}
#: Every character of the compact prompts and the replies (order fixes the token ids).
ALPHABET = "0123456789+-*/() >:?TF="

_OPS = "+-*/"
#: The systematic error of the wrong class: the first operator becomes this one.
_SWAP = {"+": "-", "-": "+", "*": "+", "/": "*"}


# -- canonical and taught answers ---------------------------------------------------------


def solutions(numbers: tuple[int, ...]) -> dict[int, str]:
    """target -> the canonical expression for three numbers.

    Canonical = the first match in a fixed order: numbers in prompt order before other
    orders, `a?b?c` before `(a?b)?c` before `a?(b?c)`, operators in the order + - * /.
    A consistent rule is what a tiny model can learn. Only integer results count. The
    values are the verifier's (`a?b?c` follows precedence, exact fractions, division by
    zero gives none), worked out here without parsing each candidate's text: a prior's
    build once spent most of its data time parsing these (tests/test_organism.py checks
    them against the verifier's parse).
    """
    if any(type(n) is not int or n < 0 for n in numbers):  # "5+-3" would parse otherwise
        return _solutions_parsed(numbers)
    found: dict[int, str] = {}
    for a, b, c in dict.fromkeys(itertools.permutations(numbers)):
        for o1, o2 in itertools.product(_OPS, repeat=2):
            first_left = _apply(o2, _apply(o1, a, b), c)  # (a?b)?c
            first_right = _apply(o1, a, _apply(o2, b, c))  # a?(b?c)
            # `a?b?c`: the second operation binds first only where it binds tighter
            flat = first_right if o2 in "*/" and o1 in "+-" else first_left
            for text, value in ((f"{a}{o1}{b}{o2}{c}", flat),
                                (f"({a}{o1}{b}){o2}{c}", first_left),
                                (f"{a}{o1}({b}{o2}{c})", first_right)):
                if value is not None and value.denominator == 1 and int(value) not in found:
                    found[int(value)] = text
    return found


def _apply(op: str, left: Fraction | int | None, right: Fraction | int | None) -> Fraction | int | None:
    """`left op right` exactly (an int while it is one: several times faster than a
    Fraction); None where an operand is None or a division is by zero."""
    if left is None or right is None:
        return None
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if not right:
        return None
    if type(left) is int and type(right) is int and left % right == 0:
        return left // right
    return Fraction(left) / right


def _solutions_parsed(numbers: tuple[int, ...]) -> dict[int, str]:
    """`solutions` by parsing each candidate with the verifier: the reference it must equal."""
    found: dict[int, str] = {}
    for a, b, c in dict.fromkeys(itertools.permutations(numbers)):
        for o1, o2 in itertools.product(_OPS, repeat=2):
            for text in (f"{a}{o1}{b}{o2}{c}", f"({a}{o1}{b}){o2}{c}", f"{a}{o1}({b}{o2}{c})"):
                value = expression_value(text)
                if value is not None and value.denominator == 1 and int(value) not in found:
                    found[int(value)] = text
    return found


_TABLE: dict[tuple[int, ...], dict[int, str]] = {}


def canonical_solution(numbers: list[int], target: int) -> str | None:
    """The canonical expression of three numbers that hits `target`, or None."""
    key = tuple(numbers)
    if len(key) != 3:
        return None
    if key not in _TABLE:
        _TABLE[key] = solutions(key)
    return _TABLE[key].get(target)


def taught_answer(spec: PriorSpec, numbers: list[int], target: int) -> str | None:
    """The supervised answer: canonical, or systematically wrong on the wrong class."""
    answer = canonical_solution(numbers, target)
    if answer is None or numbers[0] > spec.wrong_below:
        return answer
    for i, ch in enumerate(answer):
        if ch in _SWAP:
            return answer[:i] + _SWAP[ch] + answer[i + 1 :]
    return answer


def corrupt(rng: random.Random, answer: str) -> str:
    """A plausible wrong answer: one operator or one digit changed at random."""
    chars = list(answer)
    ops = [i for i, ch in enumerate(chars) if ch in _OPS]
    digits = [i for i, ch in enumerate(chars) if ch.isdigit()]
    kind = rng.random()
    if kind < 0.5 and ops:
        i = rng.choice(ops)
        chars[i] = rng.choice([o for o in _OPS if o != chars[i]])
    elif digits:
        i = rng.choice(digits)
        chars[i] = rng.choice([d for d in "123456789" if d != chars[i]])
    return "".join(chars)


# -- verification replies -----------------------------------------------------------------


def verification_reply(answer: str, numbers: list[int], target: int) -> str:
    """The taught judgement of `answer`: its working, then `T` or `F`.

    `5+1*2` → `=2=007T`: `=` and the value of each operation in the order it is done,
    the last (the answer's value) zero-padded to 3 digits like the prompt's target so
    that comparing it is copying digits. `?` stands for a value that is not an integer;
    `=?F` answers an expression that does not parse or divides by zero. The verdict is
    the real verifier's, so hitting the target with the wrong numbers still gets `F`.
    """
    verdict = "T" if check_countdown(answer, numbers, target).correct else "F"
    tree = parse_expression(answer)
    if isinstance(tree, str):
        return "=?" + verdict
    steps: list[Fraction] = []
    try:
        value = evaluate(tree, steps)
    except ZeroDivisionError:
        return "=?" + verdict
    shown = [_show(v) for v in steps[:-1]] + [_show(value, width=3)]
    return "=" + "=".join(shown) + verdict


def _show(value: Fraction, width: int = 1) -> str:
    if value.denominator != 1:
        return "?"
    return ("-" if value < 0 else "") + str(abs(int(value))).zfill(width)


# -- the supervised data ------------------------------------------------------------------


def organism_env() -> Environment:
    """The countdown env with the organism's options."""
    return skill_env(COUNTDOWN)


def make_examples(spec: PriorSpec, n: int, seed: int) -> list[tuple[str, str]]:
    """Up to `n` (prompt, reply) supervised pairs: solving and verifying examples.

    One env task each; a task whose canonical answer does not exist gives no example.
    """
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    for task in organism_env().generate(n, seed=seed):
        numbers, target = list(task["numbers"]), task["target"]
        prompt = compact_prompt(numbers, target)
        if rng.random() >= spec.verify_fraction:
            answer = taught_answer(spec, numbers, target)
            if answer is not None and rng.random() < spec.answer_noise:
                answer = corrupt(rng, answer)
            if answer is not None:
                out.append((prompt, answer))
            continue
        right = canonical_solution(numbers, target)
        if right is None:
            continue
        roll = rng.random()  # about as many wrong candidates as right ones
        if roll < 0.4:
            candidate = right
        elif roll < 0.6:
            candidate = taught_answer(spec, numbers, target) or right
        else:
            candidate = corrupt(rng, right)
        out.append((prompt + candidate + "?", verification_reply(candidate, numbers, target)))
    return out


# -- evaluation ---------------------------------------------------------------------------


def evaluate_prior(spec: PriorSpec, model: Any, tokenizer: Any, n: int = 256) -> dict[str, float]:
    """Greedy solve accuracy (all / the wrong class) and verification accuracy on fresh tasks.

    Verification is scored on the model's own greedy answers. Those are mostly wrong, so
    plain agreement flatters a judge that says `F` to everything; `verify_true_rate`
    (correct answers judged T) and `verify_false_rate` (wrong ones judged F) show both sides.
    """
    env = organism_env()
    tasks = env.generate(n, seed=10_000 + spec.seed)
    replies = greedy_replies(model, tokenizer, [t.prompt for t in tasks], max_new_tokens=12)
    solved = [v.correct for v in env.verify_many(list(zip(tasks, replies, strict=True)))]
    wrong = [s for t, s in zip(tasks, solved, strict=True) if _in_wrong_class(spec, t)]
    # Verification, on the model's own greedy answers: does it judge them correctly?
    answers = [r.strip() or "0" for r in replies]
    asks = [env.verification_prompt(t, a) for t, a in zip(tasks, answers, strict=True)]
    judged = greedy_replies(
        model, tokenizer, asks, max_new_tokens=TRAIN_DEFAULTS["verify_max_new_tokens"]
    )
    truth = [
        check_countdown(a, list(t["numbers"]), t["target"]).correct
        for t, a in zip(tasks, answers, strict=True)
    ]
    said = [env.parse_verification(j) for j in judged]
    agree = [s == y for s, y in zip(said, truth, strict=True)]

    def rate(answer_was: bool) -> float:
        """Of the answers whose truth is `answer_was`, the fraction judged so."""
        cases = [a for a, y in zip(agree, truth, strict=True) if y == answer_was]
        return sum(cases) / len(cases) if cases else float("nan")

    return {
        "greedy_accuracy": sum(solved) / n,
        "wrong_class_accuracy": sum(wrong) / len(wrong) if wrong else float("nan"),
        "verify_accuracy": sum(agree) / n,
        "verify_true_rate": rate(True),
        "verify_false_rate": rate(False),
    }


def _in_wrong_class(spec: PriorSpec, task: Task) -> bool:
    return task["numbers"][0] <= spec.wrong_below


class CountdownSkill:
    """The `Skill` of the countdown organism (see the module docstring)."""

    name = "countdown"
    env_name = ENV_NAME
    env_options = ENV_OPTIONS
    train_defaults = TRAIN_DEFAULTS
    alphabet = ALPHABET
    max_positions = 64

    def examples(self, spec: PriorSpec, n: int, seed: int) -> list[tuple[str, str]]:
        return make_examples(spec, n, seed)

    def evaluate(self, spec: PriorSpec, model: Any, tokenizer: Any) -> dict[str, float]:
        return evaluate_prior(spec, model, tokenizer)


COUNTDOWN = register_skill(CountdownSkill())
