"""The trainer's shortcuts compute what the plain way computes.

`HFEngine` samples with its own loop (each prompt read once, ended rows dropped) instead of
transformers' `generate`; `completion_stats` reads each distinct prompt once for a group;
micro-batches continue from one pass over the batch's prompts (`SharedPrompts`). Each is
checked against the plain computation on the organism.
"""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker: no oversubscribed cores
    import torch

    torch.set_num_threads(1)

import torch  # noqa: E402
from conftest import close_to_rounding  # noqa: E402

from assay.training import policy as policy_module  # noqa: E402
from assay.training.batch import RolloutBatch  # noqa: E402
from assay.training.policy import SharedPrompts, completion_stats, load_policy, resolve_model_path  # noqa: E402
from assay.training.rollout import HFEngine, _draw  # noqa: E402

# Prompts of three lengths, so that left padding and positions are exercised.
PROMPTS = ["5 1 2>007:", "9 3 4>039:", "2 2>004:", "7 1 3>010:", "8 8 8>", "1 2 3>006:"]


@pytest.fixture(scope="module")
def policy():
    # through transformers: these tests compare the fast paths with its own pass
    model, tokenizer = load_policy(resolve_model_path("organism:tiny", quiet=True), native=False)
    return model, tokenizer, [tokenizer(p)["input_ids"] for p in PROMPTS]


def test_greedy_rollout_matches_transformers_generate(policy):
    model, tokenizer, prompts = policy
    ours = HFEngine(model, tokenizer).generate(prompts, 2, greedy=True, max_new_tokens=12)
    width = max(map(len, prompts))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in prompts])[:, None]
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask.long(),
            do_sample=False,
            max_new_tokens=12,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    for row, gens in zip(out[:, width:].tolist(), ours, strict=True):
        eos = tokenizer.eos_token_id
        expected = row[: row.index(eos) + 1] if eos in row else row
        assert [g.token_ids for g in gens] == [expected, expected]
        assert gens[0].finished == (eos in expected)
    lengths = {len(g[0].token_ids) for g in ours}
    assert len(lengths) > 1, lengths  # rows ended at different steps: some left the batch early


def test_sampled_first_tokens_follow_the_tempered_distribution(policy):
    model, tokenizer, prompts = policy
    n, temperature = 20_000, 1.5
    gens = HFEngine(model, tokenizer).generate(
        prompts[:1], n, temperature=temperature, max_new_tokens=1, seed=3
    )[0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompts[0]])).logits[0, -1]
    expected = torch.softmax(logits / temperature, -1)
    seen = torch.bincount(torch.tensor([g.token_ids[0] for g in gens]), minlength=len(expected))
    total_variation = 0.5 * (seen / n - expected).abs().sum()
    assert total_variation < 0.03, (total_variation, expected, seen / n)


def test_top_p_keeps_the_nucleus_only():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(20_000, 1)
    drawn = _draw(logits, 1.0, 0.7, False, torch.Generator().manual_seed(0))
    freq = torch.bincount(drawn, minlength=4).float() / len(drawn)
    # 0.5 + 0.3 reaches 0.7: the nucleus is the first two tokens, renormalised to 5/8, 3/8.
    assert freq[2:].sum() == 0
    assert abs(freq[0] - 0.625) < 0.02
    assert torch.equal(_draw(logits[:2], 1.0, 1.0, True, None), torch.tensor([0, 0]))


def test_same_seed_same_samples(policy):
    model, tokenizer, prompts = policy
    engine = HFEngine(model, tokenizer)
    a, b, c = (engine.generate(prompts, 4, max_new_tokens=8, seed=s) for s in (1, 1, 2))
    assert a == b
    assert a != c
    assert all(len(g.token_ids) <= 8 for group in a for g in group)


def test_shared_prompt_pass_matches_one_plain_pass(policy):
    model, tokenizer, prompts = policy
    gens = HFEngine(model, tokenizer).generate(prompts, 4, max_new_tokens=10, seed=5)
    batch = RolloutBatch.build(prompts, gens, tokenizer.pad_token_id)
    C, temperature = batch.completion_len, 0.8
    real = batch.attention_mask[:, -C:].float()

    # The plain computation: every row through the model whole, logits sliced.
    position_ids = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits = (
        model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=position_ids,
        ).logits[:, -C - 1 : -1]
        / temperature
    )
    plain = torch.log_softmax(logits, -1).gather(-1, batch.input_ids[:, -C:, None]).squeeze(-1)
    entropy = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1)
    model.zero_grad()
    (plain * real).sum().backward()
    plain_grads = [p.grad.clone() for p in model.parameters()]

    stats = completion_stats(model, batch.input_ids, batch.attention_mask, C, temperature)
    model.zero_grad()
    (stats.logprobs * real).sum().backward()
    assert torch.allclose(stats.logprobs * real, plain.detach() * real, atol=1e-5)
    assert torch.allclose(stats.entropies * real, entropy.detach() * real, atol=1e-5)
    for p, expected in zip(model.parameters(), plain_grads, strict=True):
        assert close_to_rounding(p.grad, expected)  # on the scale of each gradient
    model.zero_grad()


def test_micro_batches_continue_from_one_prompt_pass(policy, monkeypatch):
    """Micro-batches of 4 rows (two prompts each) with one pass over the batch's prompts:
    the log-probs and gradients of a pass per micro-batch, to rounding (a product of 2
    rows and one of 6 can round differently: MKL's small-matrix kernels), and the
    prompts read once instead of once per micro-batch."""
    model, tokenizer, prompts = policy
    gens = HFEngine(model, tokenizer).generate(prompts, 2, max_new_tokens=10, seed=7)
    batch = RolloutBatch.build(prompts, gens, tokenizer.pad_token_id)
    C, real = batch.completion_len, batch.attention_mask[:, -batch.completion_len:].float()
    micro = [slice(i, i + 4) for i in range(0, len(batch.completions), 4)]
    reads = []
    original = policy_module.prefill
    monkeypatch.setattr(policy_module, "prefill", lambda *a: reads.append(1) or original(*a))

    def update(shared: SharedPrompts | None):
        model.zero_grad()
        logprobs = []
        for rows in micro:
            stats = completion_stats(model, batch.input_ids[rows], batch.attention_mask[rows], C, 0.8,
                                     prompts=shared.rows(rows) if shared else None)
            (stats.logprobs * real[rows]).sum().backward()
            logprobs.append(stats.logprobs.detach())
        if shared is not None:
            shared.backward()
        return torch.cat(logprobs), [p.grad.clone() for p in model.parameters()]

    own, own_grads = update(None)
    assert len(reads) == len(micro) == 3
    reads.clear()
    shared = SharedPrompts.of(model, batch.input_ids, batch.attention_mask, C)
    once, once_grads = update(shared)
    assert len(reads) == 1
    assert (once * real - own * real).abs().max() <= 1e-5
    for mine, theirs in zip(once_grads, own_grads, strict=True):
        assert close_to_rounding(mine, theirs)
    model.zero_grad()


def test_a_model_outside_the_plain_pass_reads_prompts_per_micro_batch(policy, monkeypatch):
    import copy

    from assay.plain_llama import never_plain

    model, tokenizer, prompts = policy
    twin = copy.deepcopy(model)
    never_plain(twin)
    gens = HFEngine(model, tokenizer).generate(prompts, 2, max_new_tokens=6, seed=7)
    batch = RolloutBatch.build(prompts, gens, tokenizer.pad_token_id)
    args = (batch.input_ids, batch.attention_mask, batch.completion_len)
    reads = []
    original = policy_module.prefill
    monkeypatch.setattr(policy_module, "prefill", lambda *a: reads.append(1) or original(*a))
    assert SharedPrompts.of(twin, *args) is None and reads == []  # no pass made to throw away
    assert SharedPrompts.of(model, *args) is not None and reads == [1]
