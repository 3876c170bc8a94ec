"""What the organism can be taught: the `Skill` protocol and the registry of skills.

A skill is one data module (`assay/organism/countdown.py`, ...): the env it is built
for and the options that make that env's tasks readable to a tiny model, the training
settings it recommends, the characters its tokenizer needs, its supervised examples and
its evaluation. The prior's training loop, tokenizer, model and cache are the same for
every skill; a new organism is a new data module registered here, not a copy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol

from assay.options import OptionError

if TYPE_CHECKING:
    from assay.envs.base import Environment
    from assay.organism.spec import PriorSpec


class Skill(Protocol):
    """One thing the organism is taught, and the env it is taught for."""

    #: the skill's name (`PriorSpec.skill`)
    name: str
    #: the environment the prior is built for; its `env_options` apply only to that env
    env_name: str
    #: env options that make the env's tasks ones the organism can read
    env_options: dict[str, Any]
    #: training settings suited to the organism (the trainer uses them unless told otherwise)
    train_defaults: dict[str, Any]
    #: every character of prompts and replies: the tokenizer's vocabulary
    alphabet: str
    #: the longest prompt plus reply, in tokens (the model's position table)
    max_positions: int

    def examples(self, spec: PriorSpec, n: int, seed: int) -> list[tuple[str, str]]:
        """`n` supervised (prompt, reply) pairs, or fewer; the same seed gives the same pairs."""

    def evaluate(self, spec: PriorSpec, model: Any, tokenizer: Any) -> dict[str, float]:
        """Scores of a trained prior (accuracies on fresh tasks), saved in its `assay.json`."""


#: Built-in skills by name: the module that registers each, imported on first use.
_BUILTIN = {
    "countdown": "assay.organism.countdown",
    "smt": "assay.organism.smt",
    "code": "assay.organism.code",
    "tool": "assay.organism.tool",
}
_SKILLS: dict[str, Skill] = {}


def register_skill(skill: Skill) -> Skill:
    """Make `skill` available as `PriorSpec(skill=skill.name)`; returns it."""
    _SKILLS[skill.name] = skill
    return skill


def get_skill(name: str) -> Skill:
    """The registered skill called `name`; an unknown name is an `OptionError`."""
    if name not in _SKILLS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _SKILLS:
        known = ", ".join(sorted({*_BUILTIN, *_SKILLS}))
        raise OptionError(f"unknown organism skill {name!r} (known: {known})")
    return _SKILLS[name]


def importable(name: str) -> bool:
    """Whether a new process finds the skill `name` by its name: a built-in skill, not
    replaced by one registered at run time."""
    skill = _SKILLS.get(name)
    return name in _BUILTIN and (skill is None or type(skill).__module__ == _BUILTIN[name])


def skill_env(skill: Skill) -> Environment:
    """The skill's env with its options: the tasks the organism learns and is scored on."""
    from assay.envs import get_env

    return get_env(skill.env_name, **skill.env_options)
