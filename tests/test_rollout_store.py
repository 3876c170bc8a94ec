"""Stored rollouts: DIR/rollouts.jsonl.gz, one line per completion, resumable without
duplicates, and complete enough to recompute every built-in reward without the model."""

from __future__ import annotations

import gzip
import os
import tempfile

import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.training import Trainer, resolve  # noqa: E402
from assay.training.rollout_store import FILENAME, RolloutStore, read_rollouts  # noqa: E402
from assay.training.tracking import read_metrics  # noqa: E402

SMALL = {"prompts_per_step": "4", "group_size": "4", "train_size": "64", "val_size": "8",
         "eval_every": "0", "progress": "false"}
FIELDS = {"step", "prompt", "index", "task_id", "task", "completion", "answer", "status", "score",
          "reward", "masked", "finished", "n_tokens", "sum_logprob", "mean_entropy",
          "mean_self_certainty"}


def config(out, steps=2, reward="verifier", **sets):
    return resolve(sets={**SMALL, **{k: str(v) for k, v in sets.items()}},
                   flags={"model": "organism:tiny", "out": str(out), "reward": reward, "steps": steps})


def test_every_completion_is_stored_with_its_figures(tmp_path):
    Trainer(config(tmp_path, reward="self_certainty"), quiet=True).train()
    rows = read_rollouts(tmp_path / FILENAME)
    metrics = read_metrics(tmp_path)
    assert len(rows) == 2 * 16 and all(set(r) == FIELDS for r in rows)
    for m in metrics:
        step = [r for r in rows if r["step"] == m["step"]]
        assert [(r["prompt"], r["index"]) for r in step] == [(p, j) for p in range(4) for j in range(4)]
        # the stored reward is the trained one, and the aggregates recompute it
        assert sum(r["reward"] for r in step) / 16 == pytest.approx(m["reward"], rel=1e-6)
        for r in step:
            assert r["reward"] == pytest.approx(r["mean_self_certainty"], rel=1e-5)
            assert r["sum_logprob"] <= 0 and r["mean_entropy"] >= 0 and r["n_tokens"] >= 1
        assert sum(r["status"] == "correct" for r in step) / 16 == m["gt_accuracy"]
        assert sum(r["n_tokens"] for r in step) / 16 == m["completion_length"]
    assert rows[0]["task"]["id"] == rows[0]["task_id"] and "numbers" in rows[0]["task"]


def test_save_rollouts_false_writes_none(tmp_path):
    Trainer(config(tmp_path, steps=1, save_rollouts="false"), quiet=True).train()
    assert (tmp_path / "metrics.jsonl").exists() and not (tmp_path / FILENAME).exists()


def test_a_resumed_run_stores_each_completion_once(tmp_path):
    whole = tmp_path / "whole"
    Trainer(config(whole, steps=4, save_every=2), quiet=True).train()
    cut = tmp_path / "cut"
    trainer = Trainer(config(cut, steps=4, save_every=2), quiet=True)
    for _ in range(3):  # steps 1-3 stored, checkpoint after step 2, then the process "dies"
        trainer.step()
        if trainer.step_count == 2:
            trainer.save()
    del trainer
    assert sorted({r["step"] for r in read_rollouts(cut / FILENAME)}) == [1, 2, 3]
    Trainer(config(cut, steps=4, save_every=2), resume=True, quiet=True).train()
    resumed = read_rollouts(cut / FILENAME)
    assert [r["step"] for r in resumed] == [s for s in (1, 2, 3, 4) for _ in range(16)]
    assert resumed == read_rollouts(whole / FILENAME)  # nothing lost, nothing twice


def test_a_member_cut_by_a_kill_loses_only_that_step(tmp_path):
    store = RolloutStore(tmp_path)
    store.write([{"step": 1, "completion": "a"}])
    store.write([{"step": 2, "completion": "b"}])
    whole = gzip.compress(b'{"step": 3, "completion": "c"}\n')
    with store.path.open("ab") as handle:
        handle.write(whole[: len(whole) // 2])
    assert [r["step"] for r in read_rollouts(store.path)] == [1, 2]
    store.truncate_after(1)
    assert read_rollouts(store.path) == [{"step": 1, "completion": "a"}]


# -- issue 26: a corrupt member is an error naming it, never a silent loss ----------------------


def eleven_steps(tmp_path) -> tuple[RolloutStore, list[int]]:
    """A store of steps 1-11, one member each, and the byte offset where each member starts."""
    store = RolloutStore(tmp_path)
    starts = []
    for step in range(1, 12):
        starts.append(store.path.stat().st_size if store.path.exists() else 0)
        store.write([{"step": step, "completion": f"completion {step} " * 20, "index": j}
                     for j in range(4)])
    return store, starts


def flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", [0, 12, 40])  # the header, the deflate data, near its end
def test_a_corrupt_member_names_the_file_the_member_and_the_last_good_step(tmp_path, where):
    from assay.training.rollout_store import RolloutStoreError

    store, starts = eleven_steps(tmp_path)
    flip(store.path, starts[1] + where)
    with pytest.raises(RolloutStoreError) as info:
        read_rollouts(store.path)
    message = str(info.value)
    assert "\n" not in message and str(store.path) in message
    assert "member 2" in message and f"byte {starts[1]}" in message
    assert "last good step 1" in message


def test_resume_never_rewrites_steps_it_could_not_read(tmp_path):
    from assay.training.rollout_store import RolloutStoreError

    store, starts = eleven_steps(tmp_path)
    flip(store.path, starts[1] + 12)
    before = store.path.read_bytes()
    with pytest.raises(RolloutStoreError, match="member 2"):
        store.truncate_after(10)
    assert store.path.read_bytes() == before  # nothing rewritten
    store.truncate_after(0)  # no checkpoint: every stored step runs again, nothing to read
    assert read_rollouts(store.path) == []


def test_resume_past_a_corrupt_member_drops_only_steps_that_run_again(tmp_path):
    store, starts = eleven_steps(tmp_path)
    whole = read_rollouts(store.path)
    flip(store.path, starts[5] + 12)  # step 6's member: steps 6-11 run again after a resume at 3
    store.truncate_after(3)
    assert read_rollouts(store.path) == [r for r in whole if r["step"] <= 3]
    store.write([{"step": 4, "completion": "again"}])
    assert [r["step"] for r in read_rollouts(store.path)][-2:] == [3, 4]


def test_a_metrics_file_that_is_not_a_regular_file_is_refused(tmp_path):
    from assay.training.tracking import MetricsLog, TrackerError

    (tmp_path / "metrics.jsonl").symlink_to("/dev/zero")
    with pytest.raises(TrackerError, match="metrics.jsonl is not a regular file"):
        MetricsLog(tmp_path).truncate_after(3)  # a resume: it would read forever
    with pytest.raises(TrackerError, match="metrics.jsonl is not a regular file"):
        read_metrics(tmp_path)
