"""Presets of `assay compare`: model, seeds, steps and training settings for one budget.

Timings are for 2 CPU cores on the built-in organism (docs/lab.md has the measured ones).
A preset's settings go under the user's: `--steps`, `--seeds`, `--model` and `--set`
override them.
"""

from __future__ import annotations

from typing import Any

from assay.lab.experiment import Preset

#: the rewards compared unless `--rewards` says otherwise: externals first
DEFAULT_REWARDS = (
    "verifier",
    "self_verify",
    "majority_vote",
    "self_certainty",
    "token_entropy",
    "trajectory_entropy",
    "probability",
)


def compare_preset(
    name: str,
    description: str,
    *,
    model: str = "organism",
    env: str | None = None,
    rewards: tuple[str, ...] = DEFAULT_REWARDS,
    seeds: tuple[int, ...] = (0,),
    steps: int = 100,
    sets: dict[str, str] | None = None,
) -> Preset:
    """A preset of `assay compare`: its model; its env, the env of its `env.*` settings (None:
    the model's or countdown, as for `assay train`; the organism presets' settings are
    countdown's); the rewards, seeds and steps of its runs; the `--set` values of every run
    (as strings, like the command line's)."""
    return Preset(name, description, {"model": model, "env": env, "rewards": rewards,
                                      "seeds": seeds, "steps": steps, "sets": dict(sets or {})})


#: settings shared by the organism presets (the organism's own defaults fill the rest:
#: lr 1e-4 constant, 16 prompts x 8, validation on 128 tasks x 4 samples every 10 steps)
_ORGANISM = {
    "save_every": "0",  # one checkpoint, at the end (a resumed comparison skips finished runs)
    "keep_checkpoints": "1",
    "progress": "false",
    # every run logs an external and two intrinsic signals on its own rollouts, whatever it
    # trains on (`monitor/NAME`, `monitor/NAME_accuracy`; never in the loss): the verifier's
    # figure under an intrinsic reward is its training accuracy as it collapses
    "monitor": "verifier,majority_vote,self_certainty",
}

#: validation tasks of the organism presets: enough that the paired 95% interval of a
#: run's end - start is about +-0.04 (measured on seed 0 of the default preset at 96
#: tasks: +-0.060 to +-0.073, which shrinks as 1/sqrt(tasks); docs/results.md)
VAL_SIZE = 384

PRESETS: dict[str, Preset] = {
    "smoke": compare_preset(
        "smoke",
        "seconds: 2 rewards, 1 seed, 8 steps on the tiny organism (tests, CI)",
        model="organism:tiny",
        rewards=("verifier", "majority_vote"),
        seeds=(0,),
        steps=8,
        sets={
            **_ORGANISM,
            "prompts_per_step": "4",
            "group_size": "4",
            "train_size": "256",
            "val_size": "16",
            "val_samples": "2",
            "eval_every": "4",
        },
    ),
    "quick": compare_preset(
        "quick",
        "about 8 minutes on 2 cores: every default reward, 1 seed, the organism",
        seeds=(0,),
        steps=101,
        # the demo's validation stays at 96 tasks for time: its intervals are about
        # +-0.07, so it calls "within noise" what `default` can decide
        sets={**_ORGANISM, "val_size": "96", "eval_every": "10"},
    ),
    "default": compare_preset(
        "default",
        "about 40 minutes on 2 cores: every default reward, 5 seeds, the organism",
        seeds=(0, 1, 2, 3, 4),
        steps=81,
        sets={**_ORGANISM, "val_size": str(VAL_SIZE), "eval_every": "10"},
    ),
    "real": compare_preset(
        "real",
        "about 2 hours on 2 idle cores: SmolLM2-135M-Instruct, 2-term arithmetic, verifier "
        "against majority vote, self-certainty and random, 2 seeds x 13 steps",
        model="smollm2",
        env="math",
        rewards=("verifier", "majority_vote", "self_certainty", "random"),
        # the env and its difficulty were chosen with `assay eval` on seed 0's tasks; the
        # comparison reports seeds 1 and 2 (their validation tasks are other tasks)
        seeds=(1, 2),
        steps=13,
        sets={
            # SmolLM2's own defaults fill the rest (env options, temperature 0.7)
            "prompts_per_step": "4",
            "group_size": "4",
            "max_new_tokens": "96",
            "train_layers": "4",  # a 135M model on 2 cores: the top 4 of 30 layers
            "learning_rate": "2e-5",
            "lr_schedule": "constant",
            "log_kl": "false",  # a second 135M forward per step; no KL term is trained
            "val_size": "32",
            "val_samples": "2",
            "eval_every": "4",  # validation before steps 1, 5, 9 and 13
            "save_every": "0",
            "keep_checkpoints": "1",
            "progress": "false",
            "monitor": "verifier,majority_vote,self_certainty",
        },
    ),
}


def with_lab_options(env: str, sets: dict[str, str]) -> dict[str, str]:
    """`sets` with env `env`'s `lab_options` in front as `env.KEY` (what `sets` chooses
    wins): on countdown, every experiment's majority vote compares values."""
    from assay.envs.registry import get_env_class

    return {**{f"env.{k}": v for k, v in get_env_class(env).lab_options.items()}, **sets}


def lab_config(sets: dict[str, str], flags: dict[str, Any]) -> tuple[dict[str, str], Any]:
    """The `--set` values of a lab run, with its env's `lab_options` added, and the config
    they resolve to (a bad value raises `ConfigError`, as `resolve` does)."""
    from assay.training import resolve

    config = resolve(sets=sets, flags=flags)
    merged = with_lab_options(config.env, sets)
    if merged != sets:
        config = resolve(sets=merged, flags=flags)
    return merged, config
