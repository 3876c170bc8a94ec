"""Multi-turn runs on a real organism (the code organism with test feedback): resumed
equal to uninterrupted, and rescored from their stored rollouts like any run."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.audit.rescore import rescore  # noqa: E402
from assay.training import Trainer, resolve  # noqa: E402
from assay.training.rollout_store import FILENAME, read_rollouts  # noqa: E402
from assay.training.tracking import read_metrics  # noqa: E402

SMALL = {"prompts_per_step": "4", "group_size": "4", "train_size": "64", "val_size": "4",
         "val_samples": "2", "eval_every": "2", "progress": "false", "env.feedback": "tests",
         "env.max_turns": "2"}


def config(out, steps=3, reward="verifier", **sets):
    return resolve(sets={**SMALL, **{k: str(v) for k, v in sets.items()}},
                   flags={"model": "organism:code-tiny", "env": "code", "out": str(out),
                          "reward": reward, "steps": steps})


def _figures(metrics):
    return [{k: v for k, v in m.items() if k not in ("step_time", "verify_time", "tool_seconds", "env_time")}
            for m in metrics]


@pytest.mark.slow
def test_a_resumed_multi_turn_run_equals_an_uninterrupted_one(tmp_path):
    whole = tmp_path / "whole"
    Trainer(config(whole, save_every=2), quiet=True).train()
    metrics = read_metrics(whole)
    assert all(m["turns"] > 1 for m in metrics)  # feedback turns were played
    assert any(m["tool_calls"] > 0 for m in metrics)

    cut = tmp_path / "cut"
    trainer = Trainer(config(cut, save_every=2), quiet=True)
    for _ in range(2):
        trainer.step()
    trainer.save()
    trainer.env.close()  # the process "dies" after its checkpoint, and its sandbox with it
    del trainer
    Trainer(config(cut, save_every=2), resume=True, quiet=True).train()
    assert _figures(read_metrics(cut)) == _figures(metrics)
    resumed, uninterrupted = read_rollouts(cut / FILENAME), read_rollouts(whole / FILENAME)
    assert resumed == uninterrupted
    assert all(len(r["turns"]["replies"]) == len(r["turns"]["observations"]) + 1 for r in resumed)


def test_a_multi_turn_run_is_rescored_as_it_was_trained(tmp_path):
    Trainer(config(tmp_path, steps=2, reward="self_certainty", eval_every=0), quiet=True).train()
    result = rescore(tmp_path, ["self_certainty", "majority_vote"])
    trained = read_metrics(tmp_path)
    for got, m in zip(result["rewards"]["self_certainty"]["per_step"], trained, strict=True):
        assert got["mean"] == pytest.approx(m["reward"], rel=1e-4)
    assert result["completions"] == 2 * 16


def test_the_turn_discount_is_in_the_reward_trained_on_and_the_rows_stored(tmp_path):
    from assay.verifiers import Verdict

    trainer = Trainer(config(tmp_path, steps=2, eval_every=0, **{"env.turn_discount": 0.5}),
                      quiet=True)
    # The tiny prior is rarely right: every last reply is judged right here, so that the
    # discount is all that separates the scores (the feedback turns still run the sandbox)
    trainer.env.verify_many = lambda pairs, **_: [Verdict.right()] * len(pairs)
    trainer.train()
    rows = read_rollouts(tmp_path / FILENAME)
    turns = [len(r["turns"]["replies"]) for r in rows]
    assert max(turns) > 1  # some episodes were discounted
    for row, n in zip(rows, turns, strict=True):
        assert row["status"] == "correct"  # a late right answer is still right
        assert row["score"] == 0.5 ** (n - 1)
        if not row.get("masked"):
            assert row["reward"] == row["score"]
