"""Monitor rewards: rewards computed on every step's rollouts and logged, never trained on.

`assay train --monitor verifier,self_certainty` (or `monitor: [...]` in YAML) scores the
same groups the trained reward scores, so that a run shows the external and the intrinsic
signals side by side: `monitor/<name>` is the mean over the step's completions and
`monitor/<name>_accuracy` its agreement with ground truth, defined as `reward_accuracy`.
Both cover the completions the loss saw (an infrastructure failure is masked out of the
monitors as it is out of the loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from assay.envs import Environment
from assay.rewards import Reward, RolloutGroup, get_reward, score_group
from assay.training.diagnostics import kept_rows, reward_accuracy


class Monitors:
    """The monitor rewards of a run, built from their names (unknown names: `RewardError`)."""

    def __init__(self, names: Sequence[str]) -> None:
        unique = list(dict.fromkeys(n.strip() for n in names if n.strip()))
        self.rewards: list[Reward] = [get_reward(name) for name in unique]

    def __bool__(self) -> bool:
        return bool(self.rewards)

    def check_env(self, env: Environment) -> None:
        """Refuse, before any model is loaded, a monitor that cannot score `env`."""
        for reward in self.rewards:
            reward.check_env(env)

    def score(self, groups: Sequence[RolloutGroup], *,
              reads_stats: bool | None = None) -> dict[str, list[list[float]]]:
        """Each monitor's values, group by group (before the update: the policy that sampled
        is the one a `self_verify` monitor asks); with `reads_stats`, only the monitors
        that read the token statistics (True) or only the others (False)."""
        return {r.name: [score_group(r, g)[0] for g in groups] for r in self.rewards
                if reads_stats is None or ("token_stats" in r.needs) == reads_stats}

    def metrics(
        self,
        values: dict[str, list[list[float]]],
        groups: Sequence[RolloutGroup],
        used: torch.Tensor,
    ) -> dict[str, float]:
        """`monitor/<name>` and `monitor/<name>_accuracy` over the `used` completions."""
        truth = kept_rows([[v.correct for v in g.verdicts] for g in groups], used)
        out: dict[str, float] = {}
        for reward in self.rewards:
            kept = kept_rows(values[reward.name], used)
            if not kept:  # every group skipped: nothing to measure
                out[f"monitor/{reward.name}"] = out[f"monitor/{reward.name}_accuracy"] = float("nan")
                continue
            out[f"monitor/{reward.name}"] = float(np.mean(np.concatenate(kept)))
            out[f"monitor/{reward.name}_accuracy"] = reward_accuracy(kept, truth, reward.binary)
        return out
