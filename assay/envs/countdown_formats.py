"""How a countdown task is put to a model and how its replies are read.

A `PromptFormat` is the text side of countdown: the prompt, where the answer is in a
completion, and the self-verification exchange. The task, the generator and the
verifier do not depend on it. `CountdownEnv` picks one by its `prompt_style` option:

  tinyzero: TinyZero's instructions; the answer in `<answer>` tags; verification asks
            for `\\boxed{True}` / `\\boxed{False}`;
  compact:  `5 1 2>007:`, the completion itself is the answer; verification appends the
            answer and `?`, and the reply ends with `T` or `F` (the model organism's form).
"""

from __future__ import annotations

import re
from typing import Protocol

from assay.envs.task import Task
from assay.verifiers.reasoning import outside_reasoning

TINYZERO_PROMPT = (
    "Using the numbers {numbers}, create an equation that equals {target}. "
    "You can use basic arithmetic operations (+, -, *, /) and each number must be used "
    "exactly once. Show your work in <think> </think> tags. And return the final answer "
    "in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>."
)

TINYZERO_VERIFY_PROMPT = (
    "Using the numbers {numbers}, a student proposed an expression that should equal {target}: "
    "{answer}\nCheck it: the expression may use only the given numbers, each exactly once, "
    "with + - * / and parentheses; it must be an expression, not an equation; and its value "
    "must equal {target}. End your reply with \\boxed{{True}} if it is correct and "
    "\\boxed{{False}} otherwise."
)


class PromptFormat(Protocol):
    """The text of a countdown exchange: prompt, answer extraction, self-verification."""

    def render(self, task: Task) -> str:
        """The prompt for `task`."""

    def extract(self, completion: str) -> str | None:
        """The answer in a completion, or None when there is none."""

    def verification_prompt(self, task: Task, answer: str) -> str:
        """A prompt asking the model whether `answer` solves `task`."""

    def parse_verification(self, reply: str) -> bool | None:
        """The model's judgement in a verification reply: True, False, or None if it gave none."""


def extract_answer_tag(completion: str) -> str | None:
    """The text inside the last `<answer>...</answer>` pair, or None. Linear time."""
    end = completion.rfind("</answer>")
    if end < 0:
        return None
    start = completion.rfind("<answer>", 0, end)
    if start < 0:
        return None
    return completion[start + len("<answer>") : end].strip()


def compact_prompt(numbers: list[int], target: int) -> str:
    """The compact prompt `5 1 2>007:` (numbers, `>`, the target in at least 3 digits, `:`)."""
    return " ".join(str(n) for n in numbers) + ">" + str(target).zfill(3) + ":"


class TinyZeroFormat:
    """TinyZero's prompt: instructions in words, the answer in `<answer>` tags."""

    def render(self, task: Task) -> str:
        return TINYZERO_PROMPT.format(numbers=list(task["numbers"]), target=task["target"])

    def extract(self, completion: str) -> str | None:
        return extract_answer_tag(outside_reasoning(completion))

    def verification_prompt(self, task: Task, answer: str) -> str:
        numbers, target = list(task["numbers"]), task["target"]
        return TINYZERO_VERIFY_PROMPT.format(numbers=numbers, target=target, answer=answer)

    def parse_verification(self, reply: str) -> bool | None:
        found = re.findall(r"\\boxed\{\s*(True|False)\s*\}", reply)
        return None if not found else found[-1] == "True"


class CompactFormat:
    """`5 1 2>007:` → `5+1*2`: no instructions, the completion itself is the answer."""

    def render(self, task: Task) -> str:
        return compact_prompt(list(task["numbers"]), task["target"])

    def extract(self, completion: str) -> str | None:
        # An <answer> tag, if present, still wins; otherwise the end token stopped the
        # completion right after the answer.
        completion = outside_reasoning(completion)
        tagged = extract_answer_tag(completion)
        if tagged is not None:
            return tagged
        return completion.strip() or None

    def verification_prompt(self, task: Task, answer: str) -> str:
        # The task prompt, the answer without spaces and `?`; the organism replies with its
        # working and then the verdict (`5+1*2?` → `=2=007T`).
        return self.render(task) + "".join(answer.split()) + "?"

    def parse_verification(self, reply: str) -> bool | None:
        tail = reply.strip()[-1:]  # any working may come before the verdict
        return {"T": True, "F": False}.get(tail)


#: The `prompt_style` option's values and the format each one selects.
PROMPT_FORMATS: dict[str, PromptFormat] = {
    "tinyzero": TinyZeroFormat(),
    "compact": CompactFormat(),
}
