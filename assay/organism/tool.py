"""The tool skill: the countdown organism that may check an answer with the Python tool
before it gives it.

The env is countdown in the compact form with the tool on (`tools=python`): a reply
`#EXPR` runs EXPR in the sandbox and the model reads its value (`assay/envs/tools.py`,
the compact call); any other reply is the answer. The prior is taught, on a random
`tool_fraction` of the problems, one episode of two turns, and on the rest a direct
answer:

    5 1 2>007:                    → 5+1*2                 (a direct answer)
    5 1 2>007:                    → #5-1*2                (a tool call: the candidate)
    5 1 2>007:#5-1*2<eos>=3       → 5+1*2                 (the value missed: the right one)
    6 3 1>019:#6*3+1<eos>=19      → 6*3+1                 (the value hit: the candidate)

The candidate is the answer the prior would have given directly: on the wrong class
(first number ≤ `wrong_below`) the countdown skill's systematic error, anywhere else
`answer_noise`'s near misses. After a value that misses the target the taught answer is
the canonical one, so calling the tool repairs an answer that answering directly gets
wrong: whether a reward teaches the policy to call it more (where it helps) is what RL
can change. The choice to call is the same coin on every problem, so sampling sees both
on every prompt while greedy decoding (tool_fraction < 0.5) answers directly.

The observation the prior is taught is the one the env gives: the value Python prints,
as the compact call prints it (`compact_value`); here it is computed in-process from the
prior's own expressions (digits, operators and parentheses only).
"""

from __future__ import annotations

import random
from typing import Any

from assay.envs.base import Environment
from assay.envs.countdown_formats import compact_prompt
from assay.envs.tools import COMPACT_CALL, compact_value
from assay.organism import countdown
from assay.organism.model import greedy_replies, left_padded
from assay.organism.skills import register_skill, skill_env
from assay.organism.spec import PriorSpec
from assay.organism.tokenizer import EOS

ENV_NAME = "countdown"
#: countdown's compact options, with the Python tool: one call, then the answer
ENV_OPTIONS: dict[str, Any] = {**countdown.ENV_OPTIONS, "tools": "python", "tool_calls": 1}
TRAIN_DEFAULTS: dict[str, Any] = {
    **{k: v for k, v in countdown.TRAIN_DEFAULTS.items() if k != "verify_max_new_tokens"},
}
#: countdown's characters, the call mark and the point of a float value
ALPHABET = countdown.ALPHABET + COMPACT_CALL + "."


def python_value(expression: str) -> str:
    """What the compact call shows for one of the prior's expressions: `=VALUE`, as the
    sandboxed program prints it (`assay.envs.tools.compact_code`), or `=?`."""
    try:  # the prior's own text: digits, + - * /, parentheses; no names to look up
        value = eval(compile(expression, "<expr>", "eval"), {"__builtins__": {}})  # noqa: S307
    except (ZeroDivisionError, SyntaxError):
        return "=?"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return compact_value(str(value))


def episode_examples(spec: PriorSpec, prompt: str, numbers: list[int], target: int,
                     rng: random.Random) -> list[tuple[str, str]]:
    """The supervised pairs of one problem: a direct answer, or a call and what follows."""
    answer = countdown.taught_answer(spec, numbers, target)
    if answer is None:
        return []
    if rng.random() < spec.answer_noise:
        answer = countdown.corrupt(rng, answer)
    if rng.random() >= spec.tool_fraction:
        return [(prompt, answer)]
    seen = python_value(answer)
    right = countdown.canonical_solution(numbers, target)
    final = answer if seen == compact_value(str(target)) or right is None else right
    return [(prompt, COMPACT_CALL + answer), (prompt + COMPACT_CALL + answer + EOS + seen, final)]


def make_examples(spec: PriorSpec, n: int, seed: int) -> list[tuple[str, str]]:
    """Up to `n` supervised pairs (a tool episode gives two), one env task each."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    for task in organism_env().generate(n, seed=seed):
        numbers, target = list(task["numbers"]), task["target"]
        out += episode_examples(spec, compact_prompt(numbers, target), numbers, target, rng)
        if len(out) >= n:
            break
    return out[:n]


def organism_env() -> Environment:
    """The countdown env with the tool organism's options."""
    return skill_env(TOOL)


def evaluate_prior(spec: PriorSpec, model: Any, tokenizer: Any, n: int = 256) -> dict[str, float]:
    """On fresh tasks: greedy accuracy (direct answers), the mean probability of calling
    the tool first (`tool_rate`), and the accuracy of episodes made to call it
    (`tool_accuracy`: the prompt followed by the call mark, the tool's value, the answer),
    each also on the wrong class."""
    import torch

    env = organism_env()
    tasks = env.generate(n, seed=10_000 + spec.seed)
    prompts = [t.prompt for t in tasks]
    direct = greedy_replies(model, tokenizer, prompts, max_new_tokens=12)
    calls = greedy_replies(model, tokenizer, [p + COMPACT_CALL for p in prompts], max_new_tokens=12)
    contexts = [p + COMPACT_CALL + c + EOS + python_value(c) for p, c in zip(prompts, calls, strict=True)]
    after = greedy_replies(model, tokenizer, contexts, max_new_tokens=12)
    ids, mask = left_padded(tokenizer, prompts)  # (n, P)
    positions = torch.arange(ids.shape[1]).unsqueeze(0)  # (1, P): transformers' numbering when given none
    with torch.no_grad():
        last = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1].softmax(-1)  # (n, V): the first reply token
    rate = last[:, tokenizer.convert_tokens_to_ids(COMPACT_CALL)].mean().item()
    wrong = [t["numbers"][0] <= spec.wrong_below for t in tasks]

    def accuracy(replies: list[str], only_wrong: bool = False) -> float:
        pairs = [(t, r) for t, r, w in zip(tasks, replies, wrong, strict=True) if w or not only_wrong]
        return sum(v.correct for v in env.verify_many(pairs)) / len(pairs) if pairs else float("nan")

    try:
        return {
            "greedy_accuracy": accuracy(direct),
            "wrong_class_accuracy": accuracy(direct, True),
            "tool_rate": rate,
            "tool_accuracy": accuracy(after),
            "tool_wrong_class_accuracy": accuracy(after, True),
        }
    finally:
        env.close()


class ToolSkill:
    """The `Skill` of the tool organism (see the module docstring)."""

    name = "tool"
    env_name = ENV_NAME
    env_options = ENV_OPTIONS
    train_defaults = TRAIN_DEFAULTS
    alphabet = ALPHABET
    max_positions = 64

    def examples(self, spec: PriorSpec, n: int, seed: int) -> list[tuple[str, str]]:
        return make_examples(spec, n, seed)

    def evaluate(self, spec: PriorSpec, model: Any, tokenizer: Any) -> dict[str, float]:
        return evaluate_prior(spec, model, tokenizer)


TOOL = register_skill(ToolSkill())
