"""Environments: make tasks, render prompts, extract answers, verify them."""

from assay.envs.base import (
    VERIFICATION_MODES,
    Environment,
    OptionError,
    SelfVerifying,
    WrongLabelled,
    label_offset,
    parse_assignments,
    seeded_random,
)
from assay.envs.registry import UnknownEnvError, env_names, get_env, list_envs, register_env
from assay.envs.task import Task
from assay.envs.taskfile import TaskFileError, load_tasks

__all__ = [
    "VERIFICATION_MODES",
    "Environment",
    "OptionError",
    "SelfVerifying",
    "WrongLabelled",
    "label_offset",
    "Task",
    "TaskFileError",
    "UnknownEnvError",
    "env_names",
    "get_env",
    "list_envs",
    "load_tasks",
    "parse_assignments",
    "register_env",
    "seeded_random",
]
