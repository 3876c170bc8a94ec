"""GRPO training: config, rollout engines, the trainer, checkpoints and the model organism.

The names below load on first use (PEP 562): `from assay.training import folder_lock`, as a
command does before it checks its input, must not pay for torch and the trainer (about
1.5 s), so that a usage error is reported at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assay.training.config import ConfigError, TrainConfig, resolve
    from assay.training.trainer import Trainer, TrainError

_HOMES = {
    "ConfigError": "assay.training.config",
    "TrainConfig": "assay.training.config",
    "resolve": "assay.training.config",
    "Trainer": "assay.training.trainer",
    "TrainError": "assay.training.trainer",
}

__all__ = ["ConfigError", "TrainConfig", "TrainError", "Trainer", "resolve"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'assay.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next lookup is a plain one
    return value
