"""The smt skill: the organism answers small SMT tasks in the env's compact form.

`x y|x+y<3;2*x-3*y=39:` → `x=9,y=-7` (or `unsat`) then the end token: linear integer
constraints over two unknowns, and now and then an interval with no integer in it
(`x|2*x>3;2*x<4:` → `unsat`). The supervised answer is the generator's hidden point
(any other satisfying one is rewarded as well) or `unsat`; `answer_noise` of them get one
value moved by ±1, so that sampled accuracy falls below greedy accuracy. There is no
verification skill: `self_verify` refuses the smt env before a run starts.

The checks are the smt env's own (z3 in worker processes), so building the prior's
evaluation needs z3 as verifying does.
"""

from __future__ import annotations

import random
import re
from typing import Any

from assay.envs.base import Environment
from assay.organism.model import greedy_passes
from assay.organism.skills import register_skill, skill_env
from assay.organism.spec import PriorSpec

ENV_NAME = "smt"
#: Env options that make smt tasks the organism can read (three linear tasks to one unsat).
ENV_OPTIONS: dict[str, Any] = {
    "prompt_style": "compact",
    "kinds": ("linear", "linear", "linear", "interval"),
    "min_difficulty": 1,
    "max_difficulty": 1,
    "max_value": 9,
}
#: Training settings suited to the organism (the trainer uses them unless told otherwise).
TRAIN_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-4,
    "prompts_per_step": 16,
    "group_size": 8,
    "max_new_tokens": 16,
    "eval_every": 10,
    "val_size": 64,
    "val_samples": 4,
    "warmup_steps": 0,
    "lr_schedule": "constant",
}
#: Every character of the compact prompts and the replies (order fixes the token ids).
ALPHABET = "0123456789+-*/()<>=;:|, xyzwunsat"


def organism_env() -> Environment:
    """The smt env with the organism's options."""
    return skill_env(SMT)


def _noisy(rng: random.Random, answer: str) -> str:
    """The answer with one value moved by ±1 (a plausible near miss)."""
    values = list(re.finditer(r"-?\d+", answer))
    if not values:
        return answer
    found = rng.choice(values)
    moved = int(found.group(0)) + rng.choice((-1, 1))
    return answer[: found.start()] + str(moved) + answer[found.end() :]


def make_examples(spec: PriorSpec, n: int, seed: int) -> list[tuple[str, str]]:
    """`n` (prompt, reply) pairs: the compact prompt and the hidden point or `unsat`."""
    rng = random.Random(seed)
    out = []
    for task in organism_env().generate(n, seed=seed):
        solution = task.get("solution")
        answer = "unsat" if solution is None else "".join(str(solution).split())
        if solution is not None and rng.random() < spec.answer_noise:
            answer = _noisy(rng, answer)
        out.append((task.prompt, answer))
    return out


def evaluate_prior(spec: PriorSpec, model: Any, tokenizer: Any, n: int = 128) -> dict[str, float]:
    """Greedy accuracy on fresh tasks, overall and on the satisfiable and unsat ones."""
    tasks, solved = greedy_passes(organism_env(), model, tokenizer, n, 10_000 + spec.seed,
                                 TRAIN_DEFAULTS["max_new_tokens"])

    def share(expected: str) -> float:
        cases = [s for t, s in zip(tasks, solved, strict=True) if t["expected"] == expected]
        return sum(cases) / len(cases) if cases else float("nan")

    return {"greedy_accuracy": sum(solved) / n, "sat_accuracy": share("sat"),
            "unsat_accuracy": share("unsat")}


class SmtSkill:
    """The `Skill` of the smt organism (see the module docstring)."""

    name = "smt"
    env_name = ENV_NAME
    env_options = ENV_OPTIONS
    train_defaults = TRAIN_DEFAULTS
    alphabet = ALPHABET
    max_positions = 96  # the longest prompt is about 45 characters, a reply about 12

    def examples(self, spec: PriorSpec, n: int, seed: int) -> list[tuple[str, str]]:
        return make_examples(spec, n, seed)

    def evaluate(self, spec: PriorSpec, model: Any, tokenizer: Any) -> dict[str, float]:
        return evaluate_prior(spec, model, tokenizer)


SMT = register_skill(SmtSkill())
