"""Training learns: GRPO updates move the policy toward reward, and reversed advantages move it
away. Also the trainer's advantage arithmetic (GRPO and Dr. GRPO's `scale_rewards: false`)
and its per-step reward metrics on groups with known rewards.

Two levels: a bandit (one-token completions of a softmax policy) through `assay.training.loss`,
and the organism through the real `Trainer`, with a reward that favours one first token.
"""

from __future__ import annotations

import math
import os
import tempfile

import pytest
import torch

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker: no oversubscribed cores
    torch.set_num_threads(1)

import assay.training.trainer as trainer_module  # noqa: E402
from assay.rewards import register_reward  # noqa: E402
from assay.training import Trainer, resolve  # noqa: E402
from assay.training.loss import group_advantages, policy_loss, token_mean  # noqa: E402

# -- a bandit through the loss functions ------------------------------------------------


def bandit_probability_after(steps: int, *, reverse: bool, loss_type: str, scale: bool = True) -> tuple[float, float]:
    """P(rewarded token) before and after `steps` GRPO updates of a 5-armed softmax policy."""
    torch.manual_seed(0)
    logits = torch.zeros(5, requires_grad=True)
    optimizer = torch.optim.SGD([logits], lr=0.5)
    rewarded, G, groups = 2, 8, 4
    before = float(torch.softmax(logits.detach(), 0)[rewarded])
    for _ in range(steps):
        with torch.no_grad():
            actions = torch.multinomial(torch.softmax(logits, 0), G * groups, replacement=True)
        rewards = (actions == rewarded).float()
        advantages, _ = group_advantages(rewards, G, scale=scale)
        if reverse:
            advantages = -advantages
        logprobs = torch.log_softmax(logits, 0)[actions].unsqueeze(1)  # (N, 1)
        parts = policy_loss(
            logprobs,
            logprobs.detach(),
            advantages,
            torch.ones_like(logprobs),
            loss_type=loss_type,
            max_completion_length=1,
        )
        optimizer.zero_grad()
        parts.loss.backward()
        optimizer.step()
    return before, float(torch.softmax(logits.detach(), 0)[rewarded])


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_grpo_updates_raise_the_rewarded_tokens_probability(loss_type):
    before, after = bandit_probability_after(10, reverse=False, loss_type=loss_type)
    assert after > before + 0.2, (before, after)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_reversed_advantages_lower_the_rewarded_tokens_probability(loss_type):
    before, after = bandit_probability_after(10, reverse=True, loss_type=loss_type)
    assert after < before - 0.1, (before, after)


def test_unscaled_advantages_learn_too():
    before, after = bandit_probability_after(10, reverse=False, loss_type="dr_grpo", scale=False)
    assert after > before + 0.1, (before, after)


# -- the organism through the Trainer ---------------------------------------------------

OPEN = "("  # the organism sometimes starts an answer with a parenthesis


@register_reward("first_token_paren_test", kind="intrinsic", binary=True)
def first_token_paren(group):
    return [1.0 if c.text.startswith(OPEN) else 0.0 for c in group.completions]


def config(out, reward="first_token_paren_test", **sets):
    base = {
        "prompts_per_step": "4",
        "group_size": "8",
        "val_size": "8",
        "eval_every": "0",
        "progress": "false",
        "train_size": "64",
        "max_new_tokens": "10",
        "learning_rate": "3e-3",
        "lr_schedule": "constant",
        "warmup_steps": "0",
    }
    return resolve(
        sets={**base, **{k: str(v) for k, v in sets.items()}},
        flags={"model": "organism:tiny", "out": str(out), "reward": reward, "steps": 50},
    )


def p_open(trainer: Trainer) -> float:
    """Mean over the validation prompts of π(first token = '(' | prompt)."""
    open_id = trainer.tokenizer.convert_tokens_to_ids(OPEN)
    total = 0.0
    with torch.no_grad():
        for task in trainer.val_tasks:
            ids = torch.tensor([trainer.encode_prompt(task)], device=trainer.device)
            logits = trainer.model(input_ids=ids).logits[0, -1] / trainer.config.temperature
            total += float(torch.softmax(logits.float(), -1)[open_id])
    return total / len(trainer.val_tasks)


def train_and_measure(out, steps=4, **sets) -> tuple[float, float, list[dict]]:
    trainer = Trainer(config(out, **sets), quiet=True)
    try:
        before = p_open(trainer)
        rows = [trainer.step() for _ in range(steps)]
        return before, p_open(trainer), rows
    finally:
        trainer.log.close()


def test_trainer_steps_raise_the_probability_of_the_rewarded_first_token(tmp_path):
    before, after, rows = train_and_measure(tmp_path / "run")
    assert any(row["reward"] > 0 for row in rows)  # the reward did fire
    assert after > before * 1.5, (before, after)


def test_trainer_with_reversed_advantages_lowers_it(tmp_path, monkeypatch):
    def reversed_advantages(rewards, group_size, *, scale=True):
        advantages, std = group_advantages(rewards, group_size, scale=scale)
        return -advantages, std

    monkeypatch.setattr(trainer_module, "group_advantages", reversed_advantages)
    before, after, _ = train_and_measure(tmp_path / "run")
    assert after < before * 0.8, (before, after)


def spy_advantages(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Record (rewards, advantages) of every step the Trainer takes."""
    seen = []

    def recording(rewards, group_size, *, scale=True):
        advantages, std = group_advantages(rewards, group_size, scale=scale)
        seen.append((rewards.clone(), advantages.clone()))
        return advantages, std

    monkeypatch.setattr(trainer_module, "group_advantages", recording)
    return seen


def test_dr_grpo_scale_rewards_false_reaches_the_trainer_and_still_learns(tmp_path, monkeypatch):
    seen = spy_advantages(monkeypatch)
    before, after, _ = train_and_measure(tmp_path / "dr", scale_rewards="false", loss_type="dr_grpo")
    assert after > before * 1.5, (before, after)
    for rewards, advantages in seen:
        grouped = rewards.view(-1, 8)
        expected = (grouped - grouped.mean(1, keepdim=True)).reshape(-1)  # not divided by std
        assert torch.allclose(advantages, expected, atol=1e-6)
    assert any(advantages.abs().max() > 0 for _, advantages in seen)


def test_grpo_scales_advantages_by_the_group_std_in_the_trainer(tmp_path, monkeypatch):
    seen = spy_advantages(monkeypatch)
    train_and_measure(tmp_path / "grpo", steps=2)
    scaled = [(r, a) for r, a in seen if r.view(-1, 8).std(1).max() > 0]
    assert scaled, "no group had rewards that differed"
    for rewards, advantages in scaled:
        grouped = rewards.view(-1, 8)
        std = grouped.std(1, keepdim=True)
        expected = ((grouped - grouped.mean(1, keepdim=True)) / (std + 1e-4)).reshape(-1)
        assert torch.allclose(advantages, expected, atol=1e-5)


# -- per-step reward metrics on groups with known rewards --------------------------------

_calls = {"n": 0}


@register_reward("known_std_test", kind="intrinsic", binary=True)
def known_std(group):
    """Every fourth group (the first of each step's four) scores all 0; the others 0,1,0,1,..."""
    _calls["n"] += 1
    if _calls["n"] % 4 == 1:
        return [0.0] * len(group)
    return [float(i % 2) for i in range(len(group))]


def test_frac_reward_zero_std_and_reward_std_on_known_groups(tmp_path):
    _calls["n"] = 0
    _, _, rows = train_and_measure(tmp_path / "run", steps=2, reward="known_std_test", loss_type="grpo")
    alternating = math.sqrt(8 * 0.25 / 7)  # unbiased std of 0,1,0,1,0,1,0,1
    for row in rows:
        assert row["frac_reward_zero_std"] == pytest.approx(0.25)
        assert row["reward_std"] == pytest.approx(3 * alternating / 4, rel=1e-5)
        assert row["reward"] == pytest.approx(3 * 0.5 / 4)
        assert row["clip_ratio"] == 0.0  # one update on fresh rollouts: every ratio is 1
        # grpo, ratio 1: each completion's loss is -A, and A sums to zero within each group
        assert row["loss"] == pytest.approx(0.0, abs=1e-6)


# -- the loss's defaults ---------------------------------------------------------------------


def clipping_inputs():
    logps = torch.tensor([[-1.0, -0.2, -2.0], [-0.5, -1.5, -0.1]])
    old = logps + torch.tensor([[0.5, -0.3, 0.1], [-0.4, 0.3, 0.0]])  # ratios 0.61 .. 1.49
    return logps, old, torch.tensor([1.0, -1.0]), torch.ones(2, 3)


def test_policy_loss_defaults_clip_at_0_2_on_both_sides_and_report_no_kl_without_a_reference():
    logps, old, advantages, mask = clipping_inputs()
    default = policy_loss(logps, old, advantages, mask, loss_type="grpo")
    explicit = policy_loss(logps, old, advantages, mask, loss_type="grpo", epsilon_low=0.2, epsilon_high=0.2)
    wider = policy_loss(logps, old, advantages, mask, loss_type="grpo", epsilon_low=0.4, epsilon_high=0.4)
    assert torch.equal(default.loss, explicit.loss) and default.clip_ratio == explicit.clip_ratio
    assert default.clip_ratio > wider.clip_ratio
    assert default.kl == 0.0 and explicit.kl == 0.0
    with_ref = policy_loss(logps, old, advantages, mask, loss_type="grpo", ref_logprobs=old)
    assert with_ref.kl > 0.0 and torch.equal(with_ref.loss, default.loss)  # beta 0: KL reported only
    partial = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    masked = policy_loss(logps, old, advantages, partial, loss_type="grpo", ref_logprobs=old - 0.3)
    per_token_kl = torch.exp(old - 0.3 - logps) - (old - 0.3 - logps) - 1
    assert masked.kl == pytest.approx(float(per_token_kl[partial.bool()].mean()), rel=1e-6)


def test_clipping_binds_only_where_it_can_and_beta_weights_the_kl():
    logps, old, _, mask = clipping_inputs()
    zero = policy_loss(logps, old, torch.zeros(2), mask, loss_type="grpo")
    assert zero.clip_ratio == 0.0  # ratios leave the range, but A = 0: nothing is clipped
    ref = old - 0.3
    plain = policy_loss(logps, old, torch.tensor([1.0, -1.0]), mask, loss_type="grpo", ref_logprobs=ref)
    for beta in (0.04, 1.0):
        weighted = policy_loss(
            logps, old, torch.tensor([1.0, -1.0]), mask, loss_type="grpo", ref_logprobs=ref, beta=beta
        )
        per_token_kl = torch.exp(ref - logps) - (ref - logps) - 1
        assert torch.allclose(weighted.loss - plain.loss, beta * per_token_kl.mean(), atol=1e-6)


def test_a_ratio_exactly_at_the_clip_edge_is_not_counted_as_clipped():
    """TRL counts ratio < 1 - eps_low and ratio > 1 + eps_high: the edge itself is inside."""
    logps = torch.tensor([[-1.0, -0.5]])
    for advantage in (-1.0, 1.0):  # ratio exactly 1 with eps 0: on both edges at once
        parts = policy_loss(
            logps, logps, torch.tensor([advantage]), torch.ones(1, 2), loss_type="grpo",
            epsilon_low=0.0, epsilon_high=0.0,
        )
        assert parts.clip_ratio == 0.0, advantage


def test_a_batch_of_one_token_or_none_averages_over_what_it_has():
    """The token counts are floored at 1 only so that an empty mask gives 0, not NaN."""
    logps = torch.tensor([[-1.0, -2.0]])
    ref = logps - 0.5
    one = torch.tensor([[1.0, 0.0]])
    parts = policy_loss(logps, logps, torch.tensor([1.0]), one, loss_type="dapo", ref_logprobs=ref)
    assert float(parts.loss) == pytest.approx(-1.0)  # -A * ratio on the one token
    assert parts.kl == pytest.approx(math.exp(-0.5) + 0.5 - 1)  # k3 on the one token
    grpo = policy_loss(logps, logps, torch.tensor([1.0]), one, loss_type="grpo")
    assert float(grpo.loss) == pytest.approx(-1.0)
    clipped = policy_loss(logps, logps - 1.0, torch.tensor([1.0]), one, loss_type="dapo")  # ratio e
    assert clipped.clip_ratio == 1.0
    assert token_mean(torch.tensor([[4.0, 9.0]]), one) == 4.0 and token_mean(logps, 0 * one) == 0.0
    empty = policy_loss(logps, logps, torch.tensor([1.0]), torch.zeros(1, 2), loss_type="dapo", ref_logprobs=ref)
    assert float(empty.loss) == 0.0 and empty.kl == 0.0 and empty.clip_ratio == 0.0


def test_a_loss_type_without_what_it_needs_is_refused_by_name():
    logps, old, advantages, mask = clipping_inputs()
    with pytest.raises(ValueError, match="dr_grpo needs max_completion_length"):
        policy_loss(logps, old, advantages, mask, loss_type="dr_grpo")
    with pytest.raises(ValueError, match="unknown loss_type 'ppo'"):
        policy_loss(logps, old, advantages, mask, loss_type="ppo")


def test_rollouts_and_validation_sample_with_different_seeds(tmp_path):
    trainer = Trainer(config(tmp_path / "run", eval_every="2", val_samples="2"), quiet=True)
    seeds = []
    generate = trainer.engine.generate

    def recording(*args, **kwargs):
        seeds.append(kwargs.get("seed"))
        return generate(*args, **kwargs)

    trainer.engine.generate = recording
    try:
        first, second = trainer.step(), trainer.step()
    finally:
        trainer.log.close()
    assert "val_accuracy" in first and "val_accuracy" not in second  # eval_every 2: steps 1, 3, ...
    sampled = [s for s in seeds if s is not None]
    assert len(sampled) >= 3 and len(set(sampled)) == len(sampled), seeds


def test_a_second_update_on_the_same_rollouts_uses_the_updated_policy(tmp_path):
    _calls["n"] = 0
    _, _, rows = train_and_measure(
        tmp_path / "run", steps=1, reward="known_std_test", loss_type="grpo", updates_per_batch="2"
    )
    # on the first update every ratio is 1 and the grpo loss is 0 (advantages sum to zero per
    # group); the second update must recompute the ratios with the updated weights
    assert abs(rows[0]["loss"]) > 1e-4, rows[0]["loss"]
