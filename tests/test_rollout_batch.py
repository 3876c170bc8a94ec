"""The rollout batch as tensors, written out by hand: where the padding goes, which tokens
the loss counts (truncated completions with and without `mask_truncated`, an episode's
observations), and the masks and joined statistics read over it."""

from __future__ import annotations

import pytest
import torch

from assay.training.batch import RolloutBatch, completion_mask_of, joined_stats, model_mask
from assay.training.policy import TokenStats
from assay.training.rollout import Generation

PAD = 0
PROMPTS = [[5, 6, 7], [8]]  # the second is left-padded to the first's length
GENERATIONS = [
    [Generation([11, 12, 1], True), Generation([13], True)],  # ended (1 is the end token)
    [Generation([14, 15, 16], False),  # cut at the token limit
     Generation([17, 18, 19], True, model_mask=[1, 0, 1])],  # an episode: 18 is an observation
]


def test_prompts_are_left_padded_and_completions_right_padded():
    batch = RolloutBatch.build(PROMPTS, GENERATIONS, PAD)
    assert batch.input_ids.tolist() == [
        [5, 6, 7, 11, 12, 1],
        [5, 6, 7, 13, PAD, PAD],
        [PAD, PAD, 8, 14, 15, 16],
        [PAD, PAD, 8, 17, 18, 19],
    ]
    assert batch.attention_mask.tolist() == [
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 1],
    ]
    assert batch.completion_len == 3
    assert batch.prompt_tokens == 3 + 3 + 1 + 1  # each row's own prompt, padding not counted
    assert batch.completions == [g for group in GENERATIONS for g in group]


def test_the_loss_counts_what_the_model_wrote_and_truncated_rows_only_when_asked():
    kept = RolloutBatch.build(PROMPTS, GENERATIONS, PAD).loss_mask
    assert kept.dtype == torch.float32
    assert kept.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 1], [1, 0, 1]]
    masked = RolloutBatch.build(PROMPTS, GENERATIONS, PAD, mask_truncated=True).loss_mask
    assert masked.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0], [1, 0, 1]]


def test_empty_completions_still_make_one_column():
    batch = RolloutBatch.build([[5]], [[Generation([], False), Generation([], True)]], PAD)
    assert batch.completion_len == 1
    assert batch.input_ids.tolist() == [[5, PAD], [5, PAD]]
    assert batch.attention_mask.tolist() == [[1, 0], [1, 0]]
    assert batch.loss_mask.tolist() == [[0], [0]]


def test_the_completion_mask_covers_every_generated_token_whatever_the_loss_counts():
    batch = RolloutBatch.build(PROMPTS, GENERATIONS, PAD, mask_truncated=True)
    assert completion_mask_of(batch).tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 1], [1, 0, 1]]
    assert model_mask(GENERATIONS[1][1]).tolist() == [True, False, True]
    assert model_mask(GENERATIONS[0][0]).tolist() == [True, True, True]


def test_joined_statistics_are_zero_past_each_completion():
    batch = RolloutBatch.build(PROMPTS, GENERATIONS, PAD)
    mask = completion_mask_of(batch)
    logprobs = torch.full((4, 3), -0.5, requires_grad=True)
    parts = [TokenStats(logprobs[:2], torch.ones(2, 3), torch.full((2, 3), 2.0)),
             TokenStats(logprobs[2:], torch.ones(2, 3), torch.full((2, 3), 2.0))]
    joined = joined_stats(parts, mask)
    assert joined.logprobs.tolist() == (mask * -0.5).tolist()
    assert joined.entropies.tolist() == mask.tolist()
    assert joined.self_certainty.tolist() == (mask * 2).tolist()
    assert joined.logprobs.requires_grad  # the loss pass's graph is kept
    assert not joined_stats(parts, mask, detach=True).logprobs.requires_grad


def test_a_prompt_without_its_group_is_refused():
    with pytest.raises(ValueError):  # a group per prompt, or rows would pair up wrongly
        RolloutBatch.build(PROMPTS, GENERATIONS[:1], PAD)
