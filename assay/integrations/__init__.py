"""Adapters to other training frameworks: `verl` (veRL's `custom_reward_function`) and
`trl` (TRL reward functions). Each imports its framework lazily, if at all; see
docs/integrations.md."""
