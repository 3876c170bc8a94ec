"""The plain Llama pass gives transformers' bits exactly, or is not used.

The plain pass (`assay.plain_llama`) may only make transformers' numbers faster.
So the checks here are equalities, not tolerances: logits, sampled tokens and gradients
over whole rows, each with the plain pass and with transformers' pass on the same inputs.
The one exception is the loss pass's read of the completions' real tokens only: the same
logits bit for bit, gradients equal to rounding (each weight gradient sums fewer rows),
and that is checked with a tolerance scaled to each gradient.
"""

from __future__ import annotations

import copy
import os
import tempfile

import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

import torch  # noqa: E402
from conftest import close_to_rounding  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from assay import plain_llama  # noqa: E402
from assay.plain_llama import KVCache, PlainLlama, never_plain, plain_forward  # noqa: E402
from assay.training.policy import completion_logits, completion_stats, forward, prefill  # noqa: E402
from assay.training.rollout import HFEngine  # noqa: E402


def llama(kv_heads: int, dtype: torch.dtype = torch.float32, **extra) -> LlamaForCausalLM:
    """A small random Llama: 4 heads, `kv_heads` key/value heads (fewer: grouped queries)."""
    config = LlamaConfig(vocab_size=61, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=64,
                         tie_word_embeddings=True, pad_token_id=0, **extra)
    torch.manual_seed(kv_heads)
    return LlamaForCausalLM(config).to(dtype)


def transformers_only(model):
    """A copy of `model` (same weights) that always takes transformers' own pass."""
    twin = copy.deepcopy(model)
    never_plain(twin)
    return twin


def batch(rows: int = 5, prompt: int = 7, completion: int = 6, seed: int = 1):
    """Left-padded prompts of several lengths (two rows share each prompt, as a group's
    rows do) followed by right-padded completions: ids and mask (rows, prompt + completion)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 61, (rows, prompt + completion), generator=generator)
    mask = torch.ones_like(ids)
    for r in range(rows):
        ids[r, :prompt] = ids[r - r % 2, :prompt]
        pad = (r // 2) % 3  # 0, 0, 1, 1, 2
        ids[r, :pad], mask[r, :pad] = 0, 0
        end = prompt + completion - (r % 3)  # completions of three lengths
        ids[r, end:], mask[r, end:] = 0, 0
    return ids, mask, completion


@pytest.mark.parametrize("kv_heads, dtype", [(4, torch.float32), (2, torch.float32), (2, torch.bfloat16)])
def test_every_pass_the_trainer_makes_gives_transformers_bits(kv_heads, dtype):
    model = llama(kv_heads, dtype)
    theirs = transformers_only(model)
    assert plain_forward(model) is not None and plain_forward(theirs) is None
    ids, mask, completion = batch()
    prompt = ids.shape[1] - completion
    with torch.no_grad():
        for rows in (slice(None), slice(0, 2)):  # padded prompts; the same length (no mask)
            mine_last, mine_cache = prefill(model, ids[rows, :prompt], mask[rows, :prompt])
            their_last, their_cache = prefill(theirs, ids[rows, :prompt], mask[rows, :prompt])
            assert isinstance(mine_cache, KVCache) and not isinstance(their_cache, KVCache)
            assert torch.equal(mine_last, their_last)
            for cache in (mine_cache, their_cache):  # rows leave, as ended samples do
                cache.batch_select_indices(torch.tensor([1, 0]))
            step_mask = torch.cat([mask[rows, :prompt][[1, 0]], torch.ones(2, 1, dtype=torch.long)], 1)
            step_ids, positions = ids[[1, 0], prompt : prompt + 1], step_mask[:, :-1].sum(-1, keepdim=True)
            mine, _ = forward(model, step_ids, step_mask, positions, mine_cache)
            their, _ = forward(theirs, step_ids, step_mask, positions, their_cache)
            assert torch.equal(mine, their)


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_a_pass_over_whole_rows_has_transformers_gradients(kv_heads):
    model = llama(kv_heads)
    theirs = transformers_only(model)
    ids, mask, _ = batch()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    for m in (model, theirs):
        logits, _ = forward(m, ids, mask, positions)
        (logits.log_softmax(-1)[..., 3] * mask).sum().backward()
    assert plain_forward(model) is not None
    for (name, mine), their in zip(model.named_parameters(), theirs.parameters(), strict=True):
        assert mine.grad is not None and torch.equal(mine.grad, their.grad), name


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_the_loss_pass_reads_real_tokens_only_with_transformers_logits(kv_heads):
    model = llama(kv_heads)
    theirs = transformers_only(model)
    ids, mask, completion = batch()
    real = mask[:, -completion:].bool()  # (rows, C): three completion lengths
    stats = {}
    for m in (model, theirs):
        stats[m] = completion_stats(m, ids, mask, completion, 0.7)
        (stats[m].logprobs * real).sum().backward()
    assert plain_forward(model) is not None and plain_forward(model).packs
    for field in ("logprobs", "entropies", "self_certainty"):  # bit for bit where read
        assert torch.equal(getattr(stats[model], field)[real], getattr(stats[theirs], field)[real]), field
    logits = completion_logits(model, ids, mask, completion)
    # logit t + 1 is read at completion token t: not computed (0) where that is padding
    padding = ~real[:, :-1]
    assert padding.any() and bool((logits[:, 1:][padding] == 0).all())
    for (name, mine), their in zip(model.named_parameters(), theirs.parameters(), strict=True):
        assert mine.grad is not None and close_to_rounding(mine.grad, their.grad), name


def test_a_packed_read_that_differs_reads_every_position(monkeypatch):
    original = plain_llama._unpack

    def shifted(packed, keep, B, Q):  # each real token's keys and values one slot late
        return original(packed, (keep + 1).clamp(max=B * Q - 1), B, Q)

    monkeypatch.setattr(plain_llama, "_unpack", shifted)
    model = llama(4)
    plain = plain_forward(model)
    assert plain is not None and not plain.packs  # the plain pass, every position read
    ids, mask, completion = batch()
    theirs = completion_stats(transformers_only(model), ids, mask, completion, 0.7)
    mine = completion_stats(model, ids, mask, completion, 0.7)
    assert torch.equal(mine.logprobs, theirs.logprobs)


def test_sampling_draws_the_same_tokens():
    from assay.training.policy import load_policy, resolve_model_path

    model, tokenizer = load_policy(resolve_model_path("organism:tiny", quiet=True), native=False)
    theirs = transformers_only(model)
    prompts = [tokenizer(p)["input_ids"] for p in ["5 1 2>007:", "9 3 4>039:", "2 2>004:", "8 8 8>"]]
    mine = HFEngine(model, tokenizer).generate(prompts, 4, max_new_tokens=12, seed=3)
    their = HFEngine(theirs, tokenizer).generate(prompts, 4, max_new_tokens=12, seed=3)
    assert plain_forward(model) is not None
    assert [[g.token_ids for g in group] for group in mine] == [[g.token_ids for g in group] for group in their]
    assert len({len(g.token_ids) for group in mine for g in group}) > 1  # rows left the batch early


def test_a_pass_that_differs_in_one_bit_is_not_used(monkeypatch):
    original = PlainLlama._norm

    def off_by_a_little(self, x, weight):
        return original(self, x, weight) * (1 + 2**-20)

    monkeypatch.setattr(PlainLlama, "_norm", off_by_a_little)
    model = llama(4)
    assert plain_forward(model) is None
    logits, cache = forward(model, *batch()[:2], torch.arange(13).expand(5, 13))
    assert not isinstance(cache, KVCache)  # transformers' own pass, and its own cache


def test_a_pass_wrong_only_for_padded_prompts_is_not_used(monkeypatch):
    original = PlainLlama._attention_mask

    def padding_blind(mask, Q, past):  # a causal mask that lets every query see padding
        return original(torch.ones_like(mask), Q, past)

    monkeypatch.setattr(PlainLlama, "_attention_mask", staticmethod(padding_blind))
    assert plain_forward(llama(4)) is None


def test_a_pass_wrong_only_over_a_cache_is_not_used(monkeypatch):
    original = PlainLlama._attention_mask

    def padding_blind_after_a_prompt(mask, Q, past):  # right for a prompt read whole only
        return original(mask if past == 0 else torch.ones_like(mask), Q, past)

    monkeypatch.setattr(PlainLlama, "_attention_mask", staticmethod(padding_blind_after_a_prompt))
    assert plain_forward(llama(4)) is None


def test_a_model_moved_to_another_dtype_is_checked_again(monkeypatch):
    model = llama(4)
    assert plain_forward(model) is not None
    checks = []
    original = plain_llama.reproduces
    monkeypatch.setattr(plain_llama, "reproduces", lambda m, p: checks.append(m) or original(m, p))
    assert plain_forward(model) is not None and checks == []  # once per model
    model.to(torch.bfloat16)
    assert plain_forward(model) is not None and checks == [model]


def test_two_token_prompts_read_whole_are_causal():
    model = llama(4)
    theirs = transformers_only(model)
    ids = torch.tensor([[5, 9], [7, 3]])
    mask = torch.ones_like(ids)
    positions = torch.tensor([[0, 1], [0, 1]])
    with torch.no_grad():
        mine, _ = forward(model, ids, mask, positions)
        their, _ = forward(theirs, ids, mask, positions)
    assert plain_forward(model) is not None and torch.equal(mine, their)


class Scaled(torch.nn.Linear):
    """A layer of another kind (as an adapter is) that, as built, computes what its base does."""

    scale = 1.0

    def forward(self, x):
        return super().forward(x) * self.scale


class Tweaked(LlamaForCausalLM):
    """A model class of its own (its forward could do anything the self-check does not see)."""


@pytest.mark.parametrize(
    "change", ["hook", "bias", "eager", "dropout", "dynamic rope", "linear subclass", "model subclass"]
)
def test_models_it_was_not_written_for_take_transformers_pass(change):
    if change == "model subclass":
        model = llama(4)
        model.__class__ = Tweaked
    elif change == "linear subclass":  # equal at the self-check; training could make it differ
        model = llama(4)
        base = model.model.layers[0].mlp.up_proj
        scaled = Scaled(base.in_features, base.out_features, bias=False)
        scaled.weight = base.weight
        model.model.layers[0].mlp.up_proj = scaled
    elif change == "dynamic rope":  # positions rescaled past a length: the short self-check would not see it
        model = llama(4, rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0})
    elif change == "hook":
        model = llama(4)
        model.model.layers[0].mlp.register_forward_hook(lambda *_: None)
    elif change == "bias":
        model = llama(4, attention_bias=True)
    elif change == "eager":
        model = llama(4, attn_implementation="eager")
    else:
        model = llama(4, attention_dropout=0.1)
    assert plain_forward(model) is None


def test_training_with_the_plain_pass_ends_with_transformers_weights(tmp_path, monkeypatch):
    from assay.training import Trainer, policy, resolve

    def trainer(name: str) -> Trainer:
        config = resolve(
            sets={"prompts_per_step": "4", "group_size": "4", "max_new_tokens": "12", "learning_rate": "1e-3",
                  "lr_schedule": "constant", "eval_every": "0", "save_every": "0", "val_size": "1",
                  "train_size": "64", "progress": "false", "micro_batch_size": "8", "beta": "0.02"},
            flags={"model": "organism:tiny", "out": str(tmp_path / name), "steps": 3},
        )
        return Trainer(config, quiet=True)

    mine = trainer("plain")  # the organism's folder loads without transformers
    assert getattr(mine.model, "computed_by_plain_pass", False)
    monkeypatch.setattr(policy, "load_native", lambda *args: None)  # now through transformers
    theirs = trainer("transformers")
    never_plain(theirs.model)
    for _ in range(3):
        a, b = mine.step(), theirs.step()
        assert a["completion_length"] == b["completion_length"] and a["reward"] == b["reward"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-8)
    assert plain_forward(mine.model) is not None and plain_forward(mine.model).packs
    # The loss pass reads real tokens only: gradients equal to rounding, so after three
    # updates at a rate of 1e-3 the weights differ by about 1e-6 (a wrong gradient: 1e-3).
    for (name, a), b in zip(mine.model.named_parameters(), theirs.model.parameters(), strict=True):
        assert (a - b).abs().max() <= 2e-5, name


def test_a_checked_model_can_still_be_freed():
    import gc
    import weakref

    model = llama(4)
    assert plain_forward(model) is not None
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None  # the check's record does not keep it alive


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_decoding_into_reserved_room_gives_the_bits_of_appending(kv_heads):
    """Sampling writes each step's keys and values into room reserved after the prompt
    (no copy of the cache per step); the logits are those of appending by concatenation,
    through rows leaving the batch, and the room is written in place."""
    model = llama(kv_heads)
    ids, mask, _ = batch(rows=4, prompt=7, completion=0)
    with torch.no_grad():
        _, appended = prefill(model, ids, mask)
        _, roomy = prefill(model, ids, mask)
        appended.batch_repeat_interleave(2)
        roomy.batch_repeat_interleave(2, room=3)
        assert roomy.room is not None and appended.room is None
        buffer = roomy.room[0][0]
        mask = mask.repeat_interleave(2, 0)
        position = mask.sum(-1, keepdim=True)
        steps = torch.randint(1, 61, (8, 3), generator=torch.Generator().manual_seed(5))
        for t in range(3):
            if t == 2:  # rows 1 and 6 end: both caches drop them
                keep = torch.tensor([0, 2, 3, 4, 5, 7])
                appended.batch_select_indices(keep)
                roomy.batch_select_indices(keep)
                mask, position, steps = mask[keep], position[keep], steps[keep]
            mask = torch.cat([mask, mask.new_ones(len(mask), 1)], 1)
            theirs, appended = forward(model, steps[:, t : t + 1], mask, position, appended)
            mine, roomy = forward(model, steps[:, t : t + 1], mask, position, roomy)
            assert torch.equal(theirs, mine)
            assert roomy.room is not None and roomy.length == 7 + t + 1
            if t < 2:
                assert roomy.room[0][0] is buffer  # written where it was reserved
            position = position + 1
        assert not roomy.fits(1)  # full: the next step would append by concatenation


def test_a_pass_with_gradients_never_writes_into_the_room():
    model = llama(4)
    ids, mask, _ = batch(rows=2, prompt=5, completion=0)
    with torch.no_grad():
        _, cache = prefill(model, ids, mask)
    cache.batch_repeat_interleave(1, room=2)
    before = cache.room[0][0].clone().view(torch.int32)  # bits: the room may hold anything
    mask = torch.cat([mask, mask.new_ones(2, 1)], 1)
    logits, after = forward(model, ids[:, :1], mask, mask.sum(-1, keepdim=True) - 1, cache)
    assert logits.requires_grad and after.room is None
    assert torch.equal(cache.room[0][0].view(torch.int32), before)
