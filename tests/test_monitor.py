"""Monitor rewards: scored on every step's rollouts, logged, never trained on."""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.cli import cli  # noqa: E402
from assay.training import ConfigError, Trainer, resolve  # noqa: E402
from assay.training.rollout_store import read_rollouts  # noqa: E402
from assay.training.tracking import read_metrics  # noqa: E402

SMALL = {"prompts_per_step": "4", "group_size": "4", "train_size": "64", "val_size": "8",
         "eval_every": "0", "progress": "false"}


def config(out, **sets):
    return resolve(sets={**SMALL, **sets},
                   flags={"model": "organism:tiny", "out": str(out), "reward": "verifier", "steps": 2})


def test_monitors_are_logged_and_never_trained_on(tmp_path):
    Trainer(config(tmp_path / "plain"), quiet=True).train()
    Trainer(config(tmp_path / "watched", monitor="verifier,self_certainty,format"), quiet=True).train()
    plain, watched = read_metrics(tmp_path / "plain"), read_metrics(tmp_path / "watched")
    stored = read_rollouts(tmp_path / "watched" / "rollouts.jsonl.gz")
    for before, row in zip(plain, watched, strict=True):
        # the same loss, gradient and rollouts: the monitors changed nothing of the training
        for key in ("loss", "grad_norm", "reward", "reward_accuracy", "completion_length"):
            assert row[key] == before[key], key
        # a monitor of the trained reward is that reward, figure for figure
        assert row["monitor/verifier"] == row["reward"]
        assert row["monitor/verifier_accuracy"] == row["reward_accuracy"]
        step = [r for r in stored if r["step"] == row["step"]]
        assert len(step) == 16
        assert row["monitor/format"] == np.mean([bool(r["answer"] and r["answer"].strip()) for r in step])
        assert row["monitor/self_certainty"] == pytest.approx(
            np.mean([r["mean_self_certainty"] for r in step]), rel=1e-5
        )
        assert 0.0 <= row["monitor/self_certainty_accuracy"] <= 1.0
        assert 0.0 <= row["monitor/format_accuracy"] <= 1.0
        assert "monitor/verifier" not in before


def test_only_a_monitor_that_also_asks_the_policy_gets_the_statistics_before_the_rewards(tmp_path):
    """A monitor that reads the token statistics is scored after the loss pass has given
    them; one that also asks the policy (a judge) must be scored before the update, so the
    statistics then come first, as for a trained reward that reads them."""
    from assay.rewards import register_reward
    from assay.rewards.builtin import SelfCertaintyReward

    @register_reward
    class AsksAndReads(SelfCertaintyReward):
        name = "asks_and_reads_test"
        needs = frozenset({"token_stats", "judge"})

    timing = {}
    for monitor in ("self_certainty", "asks_and_reads_test", "verifier"):
        trainer = Trainer(config(tmp_path / monitor, monitor=monitor), quiet=True)
        timing[monitor] = trainer.stats_before_loss
        trainer.log.close()
        trainer.env.close()
    assert timing == {"self_certainty": False, "asks_and_reads_test": True, "verifier": False}
    trained = resolve(sets=SMALL, flags={"model": "organism:tiny", "out": str(tmp_path / "trained"),
                                         "reward": "self_certainty", "steps": 2})
    trainer = Trainer(trained, quiet=True)
    assert trainer.stats_before_loss is True
    trainer.log.close()
    trainer.env.close()


def test_monitor_option_forms_and_errors(tmp_path):
    assert config(tmp_path, monitor="verifier, format,").monitor == ["verifier", "format"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"monitor": ["self_certainty", "random"]}))
    assert resolve(file=str(path)).monitor == ["self_certainty", "random"]
    with pytest.raises(ConfigError, match="option 'monitor' must be reward names"):
        config(tmp_path, monitor="0.5*verifier")
    # a monitor can be the collapse detector's signal
    assert config(tmp_path, monitor="format", collapse_signal="monitor/format_accuracy")


def test_an_unknown_monitor_is_one_line_before_any_model_loads(tmp_path):
    result = CliRunner().invoke(
        cli, ["train", "--model", "organism:tiny", "--monitor", "verifier,nonesuch",
              "--out", str(tmp_path / "x"), "--quiet"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("assay: error: unknown reward 'nonesuch'")
    assert result.output.count("\n") == 1 and not (tmp_path / "x").exists()


def test_cli_monitor_flag_reaches_the_metrics(tmp_path):
    sets = [arg for k, v in SMALL.items() for arg in ("--set", f"{k}={v}")]
    result = CliRunner().invoke(
        cli, ["train", "--model", "organism:tiny", "--steps", "1", "--monitor", "random",
              "--out", str(tmp_path / "run"), "--quiet", *sets])
    assert result.exit_code == 0, result.output
    (row,) = read_metrics(tmp_path / "run")
    assert 0.0 <= row["monitor/random"] <= 1.0 and math.isfinite(row["monitor/random_accuracy"])
