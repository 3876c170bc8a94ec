"""Infrastructure failures stay out of the gradient: a completion whose verifier broke (an
`error` verdict) is left out of its group's statistics, the advantages and the loss."""

from __future__ import annotations

import os
import tempfile
import zlib

import pytest
import torch

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.envs.countdown import CountdownEnv  # noqa: E402
from assay.training import Trainer, resolve  # noqa: E402
from assay.training.loss import group_advantages, masked_group_advantages, policy_loss  # noqa: E402


def test_masked_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 5.0, 1.0, 0.0, 1.0, 9.0, 9.0, 1.0, 0.0, 1.0, 0.0])
    keep = torch.tensor([1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1], dtype=torch.bool)
    adv, std, used = masked_group_advantages(rewards, keep, 4)
    # group 0 without its third completion is the group [1, 0, 1]
    expected, expected_std = group_advantages(torch.tensor([1.0, 0.0, 1.0]), 3)
    assert torch.equal(adv[[0, 1, 3]], expected) and adv[2] == 0
    assert torch.equal(std[:4], expected_std[0].expand(4))
    # group 1 has one completion left: skipped, no advantage, no std, not in the loss
    assert torch.equal(adv[4:8], torch.zeros(4)) and std[4:8].isnan().all()
    # group 2 is whole: the unmasked computation
    assert torch.equal(adv[8:], group_advantages(rewards[8:], 4)[0])
    assert used.tolist() == [True, True, False, True, False, False, False, False, True, True, True, True]
    # nothing masked: bit for bit `group_advantages`
    whole, _, all_used = masked_group_advantages(rewards, torch.ones(12, dtype=torch.bool), 4)
    assert torch.equal(whole, group_advantages(rewards, 4)[0]) and all_used.all()


def test_a_group_left_with_two_completions_still_counts():
    rewards = torch.tensor([1.0, 0.0, 5.0, 5.0])
    adv, std, used = masked_group_advantages(rewards, torch.tensor([True, True, False, False]), 4)
    expected, expected_std = group_advantages(torch.tensor([1.0, 0.0]), 2)
    assert torch.equal(adv[:2], expected) and adv[2:].eq(0).all()
    assert used.tolist() == [True, True, False, False] and std[0] == expected_std[0]


def broken(task_id: str, answer: str, first_task: str) -> bool:
    """Where the flaky verifier raises: every completion of one task (a group that must be
    skipped) and about a third of the others."""
    return task_id == first_task or zlib.crc32(answer.encode()) % 3 == 0


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_a_broken_verifier_is_masked_out_of_advantages_and_loss_exactly(
    tmp_path, monkeypatch, loss_type
):
    seen: dict = {}
    original_check = CountdownEnv.check

    def flaky_check(self, task, answer):
        if broken(task.id, answer, seen["first_task"]):
            raise RuntimeError("the verifier broke")
        return original_check(self, task, answer)

    monkeypatch.setattr(CountdownEnv, "check", flaky_check)
    for name in ("make_groups", "score", "update"):
        real = getattr(Trainer, name)

        def spy(self, *args, _real=real, _name=name):
            if _name == "make_groups":
                seen["first_task"] = args[0][0].id
            result = _real(self, *args)
            seen[_name] = (args, result)
            return result

        monkeypatch.setattr(Trainer, name, spy)

    config = resolve(
        sets={"prompts_per_step": "8", "group_size": "4", "train_size": "64", "val_size": "8",
              "eval_every": "0", "progress": "false", "beta": "0", "loss_type": loss_type,
              "monitor": "ground_truth"},
        flags={"model": "organism:tiny", "out": str(tmp_path / "run"), "steps": 1},
    )
    trainer = Trainer(config, quiet=True)
    row = trainer.step()

    groups = seen["make_groups"][1]
    rewards, _ = seen["score"][1]
    (batch, _, advantages, _ref, _fused, used), (_, stats) = seen["update"]
    flags = [[a is not None and broken(g.task.id, a, seen["first_task"]) for a in g.answers] for g in groups]
    assert [[v.status == "error" for v in g.verdicts] for g in groups] == flags
    n_broken = sum(map(sum, flags))
    assert 0 < n_broken < 16, flags  # some broken, enough groups left to learn from
    assert row["masked_completions"] == row["verdicts/error"] == n_broken

    # What the advantages and the loss would be for a batch without those completions.
    expected_adv = torch.zeros(len(batch.completions))
    kept_rows, skipped = [], 0
    for p, (values, bad) in enumerate(zip(rewards, flags, strict=True)):
        rows = [p * 4 + j for j in range(4) if not bad[j]]
        if len(rows) < 2:
            skipped += 1
            continue
        kept = torch.tensor([values[j] for j in range(4) if not bad[j]])
        expected_adv[rows] = group_advantages(kept, len(rows), scale=config.scale_rewards)[0]
        kept_rows += rows
    assert skipped >= 1 and row["skipped_groups"] == skipped
    assert torch.equal(advantages.cpu(), expected_adv)
    assert used.nonzero().squeeze(1).tolist() == kept_rows

    index = torch.tensor(kept_rows)
    old = stats.logprobs.detach()[index]
    mask = batch.loss_mask[index]
    expected = policy_loss(
        old, old, expected_adv[index], mask, loss_type=loss_type, beta=0.0,
        max_completion_length=config.max_new_tokens, num_sequences=len(kept_rows),
        num_tokens=float(mask.sum()),
    )
    assert row["loss"] == float(expected.loss)
    assert row["grad_norm"] > 0
    # the figures cover the same completions: a masked one is unknown, not a 0
    kept_truth = [groups[r // 4].verdicts[r % 4].correct for r in kept_rows]
    assert row["gt_accuracy"] == row["monitor/ground_truth"] == sum(kept_truth) / len(kept_truth)
    # and `assay rescore` leaves out of its figures what the trainer left out of the loss
    from assay.audit.rescore import rescore

    (point,) = rescore(tmp_path / "run", ["verifier"])["rewards"]["verifier"]["per_step"]
    assert point == {"step": 1, "mean": row["reward"], "accuracy": row["reward_accuracy"]}
