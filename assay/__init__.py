"""assay: reinforcement learning of language models with rewards grounded in computation."""

from assay.envs.base import Environment, Task, seeded_random
from assay.envs.registry import get_env, list_envs, register_env
from assay.verifiers.verdict import STATUSES, Verdict

__version__ = "0.1.0"

__all__ = [
    "STATUSES",
    "Environment",
    "Task",
    "Verdict",
    "get_env",
    "list_envs",
    "register_env",
    "seeded_random",
]
