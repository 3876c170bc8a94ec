"""Rewards over a group of rollouts: external (verifier, self_verify, ground_truth) and
intrinsic (majority_vote, self_certainty, token_entropy, trajectory_entropy, probability,
semantic_entropy), controls (random, format), weighted combinations, and user-registered
rewards."""

from assay.rewards.base import (
    KINDS,
    Completion,
    FunctionReward,
    Judge,
    Reward,
    RewardError,
    RolloutGroup,
    WeightedSum,
    check_kind,
)
from assay.rewards.builtin import BUILTIN, CONTROL, EXTERNAL, INTRINSIC, majority_key
from assay.rewards.registry import get_reward, register_reward, reward_names, score_group

__all__ = [
    "BUILTIN",
    "CONTROL",
    "EXTERNAL",
    "INTRINSIC",
    "KINDS",
    "Completion",
    "FunctionReward",
    "Judge",
    "Reward",
    "RewardError",
    "RolloutGroup",
    "WeightedSum",
    "get_reward",
    "majority_key",
    "register_reward",
    "reward_names",
    "score_group",
    "check_kind",
]
