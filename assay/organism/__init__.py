"""The model organism: a ~1M-parameter Llama that learns a skill on a CPU in minutes.

`--model organism[:preset]` resolves to a directory in Hugging Face format (config.json,
model.safetensors, a character-level `PreTrainedTokenizerFast`) that is loaded exactly
like any other model. The directory is a supervised *prior*, built on first use and
cached (`cache.py`). What the prior learns is a *skill*, one data module each
(`countdown.py`: solve and check countdown in the env's compact form; `smt.py`: small
SMT tasks; `code.py`: one-line Python functions, run in the sandbox); the spec
(`spec.py`) names the skill, and the tokenizer, model and training loop are shared.

Modules: `spec` (PriorSpec, presets), `skills` (the Skill protocol and registry),
`tokenizer`, `model`, `prior` (the supervised loop), `cache` (build once, find again),
`pinned` (a build in a process of its own, on pinned kernels), and one data module per
skill. This package uses `assay.envs` and `assay.verifiers`,
never `assay.training` (training uses it).
"""

from assay.organism.cache import LEGACY_ENV, cache_root, ensure_prior, prior_path, read_metadata
from assay.organism.countdown import ALPHABET as CHARS
from assay.organism.countdown import ENV_OPTIONS, TRAIN_DEFAULTS, organism_env
from assay.organism.skills import Skill, get_skill, register_skill, skill_env
from assay.organism.spec import (
    DEFAULT_SKILL,
    FORMAT_VERSION,
    PRESETS,
    PriorSpec,
    is_organism,
    make_spec,
    parse_organism,
    skill_of,
)
from assay.organism.tokenizer import EOS, PAD, UNK, make_tokenizer

__all__ = [
    "CHARS",
    "DEFAULT_SKILL",
    "ENV_OPTIONS",
    "EOS",
    "FORMAT_VERSION",
    "LEGACY_ENV",
    "PAD",
    "PRESETS",
    "TRAIN_DEFAULTS",
    "UNK",
    "PriorSpec",
    "Skill",
    "cache_root",
    "ensure_prior",
    "get_skill",
    "is_organism",
    "make_spec",
    "make_tokenizer",
    "organism_env",
    "parse_organism",
    "prior_path",
    "read_metadata",
    "register_skill",
    "skill_env",
    "skill_of",
]

