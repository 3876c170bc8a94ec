"""What a prior is: `PriorSpec`, the named presets, and the `organism[:preset]` model names.

A spec's hash names its cache folder, so everything that changes what gets built is a
field here (or `FORMAT_VERSION`, for changes to the builder itself).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from assay.options import OptionError, build_options
from assay.organism.skills import Skill, get_skill

#: Bump when the builder changes in a way that changes what it builds. 4: builds run on
#: pinned kernels (`pinned.py`), the same bits on any Intel CPU with AVX2 (not on AMD's).
FORMAT_VERSION = 4
#: The skill of priors that name none (and of every prior built before skills existed).
DEFAULT_SKILL = "countdown"


@dataclass(frozen=True)
class PriorSpec:
    """Everything that decides what a prior is; its hash names the cache folder."""

    #: the data module that teaches the prior (`assay.organism.skills`): its env, data and
    #: evaluation
    skill: str = DEFAULT_SKILL
    sft_steps: int = 3000  #: supervised steps (≈ 5 min on 2 idle cores)
    batch_size: int = 64
    learning_rate: float = 1e-3
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 512
    #: problems in the skill's wrong class get a confidently wrong supervised answer
    #: (countdown: first number ≤ this, first operator swapped); 0 = none, 3 ≈ a third
    wrong_below: int = 3
    #: fraction of supervised examples that teach verification instead of solving; with
    #: 3,000 steps, 0.65 keeps about as many solving examples as 2,000 steps at 0.5 gave,
    #: and makes a judge whose working is right often enough for `self_verify` to carry
    #: training (docs/training.md, "The prior")
    verify_fraction: float = 0.65
    #: fraction of solving examples taught a randomly corrupted answer: spreads some
    #: probability onto errors, opening a gap between sampled and greedy accuracy
    answer_noise: float = 0.15
    #: the SFT learning rate decays (cosine) to this fraction of its peak; a higher floor
    #: leaves the prior less sharp
    final_lr_fraction: float = 0.1
    seed: int = 0
    #: the tool skill only: fraction of problems taught as a tool episode (call the tool
    #: on the candidate answer, read its value, then answer) instead of a direct answer
    tool_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.sft_steps < 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("need sft_steps >= 0, batch_size >= 1, learning_rate > 0")
        if self.hidden_size % self.heads:
            raise ValueError("hidden_size must be a multiple of heads")
        if not 0 <= self.wrong_below <= 9:
            raise ValueError("wrong_below must be in 0..9")
        if not 0.0 <= self.verify_fraction < 1.0:
            raise ValueError("verify_fraction must be in [0, 1)")
        if not 0.0 <= self.answer_noise < 1.0 or not 0.0 <= self.final_lr_fraction <= 1.0:
            raise ValueError("answer_noise must be in [0, 1) and final_lr_fraction in [0, 1]")
        if not 0.0 <= self.tool_fraction < 1.0:
            raise ValueError("tool_fraction must be in [0, 1)")

    def key(self) -> str:
        """A short hash of the format version and every field: the cache folder's suffix."""
        fields = dataclasses.asdict(self)
        # Priors built before skills existed were all countdown and hashed without the
        # field; leaving the default out keeps their folders (no rebuild for anyone).
        if fields["skill"] == DEFAULT_SKILL:
            del fields["skill"]
        if fields["tool_fraction"] == 0.0:  # likewise every prior built before the tool skill
            del fields["tool_fraction"]
        blob = json.dumps({"v": FORMAT_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


#: Named variants. `tiny` builds in seconds, for tests: it has the reply formats, little skill.
PRESETS: dict[str, PriorSpec] = {
    "default": PriorSpec(),
    "honest": PriorSpec(wrong_below=0),
    "tiny": PriorSpec(sft_steps=150, batch_size=32, verify_fraction=0.5),
    # Small SMT tasks in the smt env's compact form (assay/organism/smt.py).
    "smt": PriorSpec(skill="smt", sft_steps=300, verify_fraction=0.5),
    # One-line Python functions from shown examples, run in the sandbox
    # (assay/organism/code.py). No verification skill, so no verification examples;
    # first numbers 1-2 make the wrong class, about a third of the tasks.
    "code": PriorSpec(skill="code", sft_steps=1200, batch_size=32, wrong_below=2,
                      verify_fraction=0.0),
    "code-tiny": PriorSpec(skill="code", sft_steps=20, batch_size=16, wrong_below=2,
                           verify_fraction=0.0),
    # Countdown with the Python tool (assay/organism/tool.py): a quarter of the problems
    # taught as a call of the tool on the candidate answer, then the answer.
    "tool": PriorSpec(skill="tool", sft_steps=1500, verify_fraction=0.0, tool_fraction=0.25),
    "tool-tiny": PriorSpec(skill="tool", sft_steps=150, batch_size=32, verify_fraction=0.0,
                           tool_fraction=0.25),
}


def make_spec(preset: str = "default", /, **overrides: Any) -> PriorSpec:
    """A `PriorSpec` from a preset name and field overrides (strings are coerced).

    An unknown preset, field or skill, or a value that does not fit, is an `OptionError`.
    """
    if preset not in PRESETS:
        raise OptionError(f"unknown organism preset {preset!r} (known: {', '.join(PRESETS)})")
    spec = build_options(PriorSpec, overrides, owner="organism prior", base=PRESETS[preset])
    get_skill(spec.skill)  # fail here, not minutes into a build
    return spec


def skill_of(preset: str = "default", /, **overrides: Any) -> Skill:
    """The skill that `organism:PRESET` (with these prior options) is built with."""
    return get_skill(make_spec(preset, **overrides).skill)


def is_organism(model: str) -> bool:
    """Whether a `--model` value names the organism (`organism` or `organism:PRESET`)."""
    return model == "organism" or model.startswith("organism:")


def parse_organism(model: str) -> str:
    """The preset a model name asks for: `organism` → "default", `organism:tiny` → "tiny"."""
    return model.partition(":")[2] or "default"
