"""Correctness oracle: assay's GRPO loss equals TRL's on identical inputs, per loss type.

TRL's `GRPOTrainer._compute_loss` is run for real; the only thing replaced is the
model forward that produces per-token log-probs, so both sides see the same
log-probs, old log-probs, reference log-probs, advantages and masks.
"""

from __future__ import annotations

import pytest
import torch

from assay.training.loss import group_advantages, policy_loss

trl = pytest.importorskip("trl", reason="needs trl (pip install 'assay[dev]')")


@pytest.fixture(scope="module")
def trl_trainer(tmp_path_factory):
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from assay.organism import CHARS, make_tokenizer

    tokenizer = make_tokenizer(CHARS)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("trl")),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=7,
        report_to=[],
        use_cpu=True,
        logging_steps=1,
    )
    data = Dataset.from_list([{"prompt": "1 2 3>006:"}] * 4)
    return GRPOTrainer(
        model=model,
        reward_funcs=lambda completions, **_: [0.0] * len(completions),
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
    )


def _inputs(seed: int = 0, B: int = 4, T: int = 7):
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(B, T, generator=g) * 3
    old = logps + 0.3 * torch.randn(B, T, generator=g)  # ratios well outside the clip range
    ref = logps + 0.2 * torch.randn(B, T, generator=g)
    mask = torch.ones(B, T)
    mask[0, 5:] = 0
    mask[2, 2:] = 0
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.25])
    advantages, _ = group_advantages(rewards, 4)
    return logps, old, ref, mask, advantages


def _trl_loss(trainer, loss_type, beta, logps, old, ref, mask, advantages):
    trainer.loss_type, trainer.beta = loss_type, beta
    trainer.epsilon_low, trainer.epsilon_high = 0.2, 0.28
    trainer.max_completion_length = logps.size(1)
    # Plain k3 (the notes' formula); TRL >= 1.x also offers k3 scaled by the ratio (on by default).
    trainer.args.use_bias_correction_kl = False
    leaf = logps.clone().requires_grad_(True)
    # The only stand-in: the forward pass returns our log-probs instead of running the model.
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (
        leaf,
        torch.zeros_like(leaf),
        None,
    )
    B, T = logps.shape
    inputs = {
        "prompt_ids": torch.ones(B, 3, dtype=torch.long),
        "prompt_mask": torch.ones(B, 3, dtype=torch.long),
        "completion_ids": torch.ones(B, T, dtype=torch.long),
        "completion_mask": mask.long(),
        "advantages": advantages,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": mask.sum(),
    }
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.training_step in a real run
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    return loss.detach(), leaf.grad


# A fixed seed per case: `hash()` of a tuple holding a str changes with every process.
SEEDS = {("grpo", 0.0): 11, ("grpo", 0.04): 12, ("dr_grpo", 0.0): 13, ("dr_grpo", 0.04): 14,
         ("dapo", 0.0): 15, ("dapo", 0.04): 16}


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_loss_and_gradient_match_trl(trl_trainer, loss_type, beta):
    logps, old, ref, mask, advantages = _inputs(seed=SEEDS[(loss_type, beta)])
    expected, expected_grad = _trl_loss(
        trl_trainer, loss_type, beta, logps, old, ref, mask, advantages
    )
    leaf = logps.clone().requires_grad_(True)
    ours = policy_loss(
        leaf,
        old,
        advantages,
        mask,
        loss_type=loss_type,
        epsilon_low=0.2,
        epsilon_high=0.28,
        beta=beta,
        ref_logprobs=ref if beta else None,
        max_completion_length=logps.size(1),
    )
    ours.loss.backward()
    assert torch.allclose(ours.loss.detach(), expected, atol=1e-6), (ours.loss, expected)
    assert torch.allclose(leaf.grad, expected_grad, atol=1e-6)
    assert ours.loss.abs() > 1e-4  # a non-trivial value, not two zeros agreeing
    # TRL's clip ratio: tokens whose ratio left the clip range on the side where clipping
    # binds (below 1 - eps_low with A < 0, above 1 + eps_high with A > 0), over all tokens.
    trl_clip = trl_trainer._metrics["train"]["clip_ratio/region_mean"][-1]
    assert ours.clip_ratio == pytest.approx(float(trl_clip), abs=1e-6)
    assert 0.0 < ours.clip_ratio < 1.0


def test_loss_types_differ_on_the_same_inputs(trl_trainer):
    logps, old, ref, mask, advantages = _inputs(seed=3)
    values = {
        t: float(
            policy_loss(logps, old, advantages, mask, loss_type=t, max_completion_length=7).loss
        )
        for t in ("grpo", "dr_grpo", "dapo")
    }
    assert len({round(v, 6) for v in values.values()}) == 3, values


def test_micro_batches_add_up_to_the_batch_loss():
    logps, old, ref, mask, advantages = _inputs(seed=5)
    for loss_type in ("grpo", "dr_grpo", "dapo"):
        whole = policy_loss(
            logps, old, advantages, mask, loss_type=loss_type, max_completion_length=7
        ).loss
        parts = sum(
            policy_loss(
                logps[s],
                old[s],
                advantages[s],
                mask[s],
                loss_type=loss_type,
                max_completion_length=7,
                num_sequences=4,
                num_tokens=float(mask.sum()),
            ).loss
            for s in (slice(0, 1), slice(1, 4))
        )
        assert torch.allclose(whole, parts, atol=1e-6), loss_type
