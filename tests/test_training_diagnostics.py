"""Diagnostics by hand, the collapse detector, and the optional trackers."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker: no oversubscribed cores
    import torch

    torch.set_num_threads(1)

from assay.envs import get_env  # noqa: E402
from assay.rewards import Completion, RolloutGroup  # noqa: E402
from assay.training import Trainer, resolve  # noqa: E402
from assay.training.diagnostics import (  # noqa: E402
    CollapseDetector,
    label_accuracy,
    majority_ratio,
    repetition_rate,
    reward_accuracy,
    said_correct,
)
from assay.training.tracking import read_metrics  # noqa: E402

ENV = get_env("countdown", prompt_style="compact")


def group(texts):
    task = ENV.make_task({"numbers": [5, 1, 2], "target": 7})
    empty = np.zeros(1)
    comps = [Completion(t, [0], empty, empty, empty) for t in texts]
    return RolloutGroup(task, task.prompt, comps, ENV)


def test_reward_accuracy_binary_and_continuous():
    truth = [[True, False, False, True], [False, False, False, False]]
    # binary: prompt 1 agrees on 3 of 4, prompt 2 on 2 of 4
    assert reward_accuracy([[1, 1, 0, 1], [1, 0, 1, 0]], truth, binary=True) == (0.75 + 0.5) / 2
    # continuous: "says correct" = above the group mean
    assert said_correct([0.9, 0.1, 0.2, 0.8], binary=False) == [True, False, False, True]
    assert reward_accuracy([[0.9, 0.1, 0.2, 0.8], [3, 3, 3, 3]], truth, binary=False) == 1.0


def test_label_accuracy_follows_the_vote():
    right = group(["5+1*2", "5+1*2", "5+1+2"])  # the vote (5+1*2) is correct
    wrong = group(["5+1+2", "5+1+2", "5+1*2"])  # the vote (5+1+2) is wrong
    silent = group(["", "", ""])  # no answer, no label
    truth = [[v.correct for v in g.verdicts] for g in (right, wrong, silent)]
    assert label_accuracy([right, wrong, silent], truth) == 1 / 3


def test_majority_ratio_is_the_share_of_the_most_common_answer_over_the_whole_group():
    agree = group(["5+1*2", "5+1*2", "5+1*2", "5+1+2"])  # 3 of 4 agree
    spread = group(["5+1*2", "5+1+2", "2*5-1", ""])  # all differ; one gives no answer
    silent = group(["", "", "", ""])
    assert majority_ratio([agree]) == 0.75
    assert majority_ratio([spread]) == 0.25  # the blank counts in G, never in the majority
    assert majority_ratio([silent]) == 0.0
    assert majority_ratio([agree, spread]) == 0.5


def test_repetition_rate():
    assert repetition_rate([[1, 2, 3, 4, 5, 6]]) == 0.0
    assert repetition_rate([[7] * 8]) == 1 - 1 / 5  # five 4-grams, all the same
    assert repetition_rate([[1, 2], [7] * 8]) == (0 + 0.8) / 2


def test_collapse_detector_reports_the_first_step_below_threshold():
    detector = CollapseDetector("reward_accuracy", 0.01)
    values = [0.5, 0.2, 0.009, 0.0, 0.5]
    fired = [detector.update(i + 1, {"reward_accuracy": v}) for i, v in enumerate(values)]
    assert [f is not None for f in fired] == [False, False, True, False, False]
    assert detector.collapse.step == 3 and "reward_accuracy = 0.0090 < 0.01" in (
        detector.collapse.describe()
    )
    assert CollapseDetector("val_accuracy", 0.5).update(1, {"reward": 0.0}) is None


def test_stop_on_collapse_ends_the_run_and_records_it(tmp_path):
    sets = {
        "prompts_per_step": 4,
        "group_size": 4,
        "val_size": 8,
        "val_samples": 2,
        "eval_every": 0,
        "progress": False,
        "train_size": 64,
        "collapse_threshold": 2.0,
        "stop_on_collapse": True,
        "tensorboard": True,
    }
    config = resolve(
        sets={k: str(v) for k, v in sets.items()},
        flags={"model": "organism:tiny", "out": str(tmp_path), "steps": 5},
    )
    summary = Trainer(config, quiet=True).train()
    rows = read_metrics(tmp_path)
    assert len(rows) == 1 and rows[0]["collapse"]["signal"] == "reward_accuracy"
    assert summary["collapse"]["step"] == 1
    assert json.loads((tmp_path / "summary.json").read_text())["collapse"]["step"] == 1
    assert (tmp_path / "checkpoints" / "step-000001").is_dir()
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


# -- found by a full mutation run of diagnostics.py (docs/development.md) ---------------


def test_reward_precision_averages_over_prompts_that_promote_something():
    from assay.training.diagnostics import reward_precision

    rewards = [[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    truth = [[True, False, False, False], [True, True, True, True], [False] * 4]
    # prompt 1 promotes one right and one wrong (0.5); prompt 2 promotes none (left out);
    # prompt 3 promotes one wrong (0.0)
    assert reward_precision(rewards, truth, binary=True) == 0.25
    assert reward_precision([[0, 0]], [[True, True]], binary=True) is None


def test_reward_precision_and_kept_rows_refuse_mismatched_lengths():
    import torch

    from assay.training.diagnostics import kept_rows, reward_precision

    with pytest.raises(ValueError):
        reward_precision([[1, 0, 1]], [[True, False]], binary=True)  # 3 rewards, 2 truths
    with pytest.raises(ValueError):
        kept_rows([[1, 2], [3]], torch.tensor([True, True, True, False]))  # a short group
    with pytest.raises(ValueError):
        reward_precision([[1], [0]], [[True]], binary=True)  # 2 prompts' rewards, 1 truth
    with pytest.raises(ValueError):
        kept_rows([[1, 2], [3, 4], [5, 6]], torch.tensor([True] * 4))  # 3 groups, 2 masks
    assert kept_rows([[1, 2], [3, 4]], torch.tensor([True, False, False, False])) == [[1]]
    assert kept_rows([[1, 2]], torch.tensor([False, True])) == [[2]]  # a single group


def _entropy_rows(n: int, drop_at: int) -> list[dict]:
    return [{"step": s, "entropy": 1.0 if s < drop_at else 0.05, "completion_length": 6.0,
             "repetition_rate": 0.0} for s in range(1, n + 1)]


def test_label_free_detector_returns_the_collapse_once_and_describes_it():
    from assay.training import collapse_rules
    from assay.training.diagnostics import CollapseDetector

    detector = CollapseDetector("label_free")
    assert detector.window == collapse_rules.WINDOW  # the documented default window
    fired = [(row["step"], detector.update(row["step"], row)) for row in _entropy_rows(60, 30)]
    hits = [(step, c) for step, c in fired if c is not None]
    assert len(hits) == 1  # reported the first time only
    step, collapse = hits[0]
    assert collapse is detector.collapse and collapse.step == step
    assert collapse.signal == "label_free:entropy" and 30 < step < 45
    assert [r["step"] for r in detector.history] == list(range(1, step + 1))
    said = collapse.describe()
    assert said.startswith(f"model collapse at step {step} (label-free)") and "entropy" in said
