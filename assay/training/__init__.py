"""GRPO training: config, rollout engines, the trainer, checkpoints and the model organism."""

from assay.training.config import ConfigError, TrainConfig, resolve
from assay.training.trainer import Trainer, TrainError

__all__ = ["ConfigError", "TrainConfig", "TrainError", "Trainer", "resolve"]
