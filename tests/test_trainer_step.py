"""What one trainer step writes down and how it updates: its metrics reach metrics.jsonl
and agree with the completions it stores, the engine is synced after every update,
micro-batches make the whole batch's update, and KL is measured before the first update.
(The trainer's covering tests for scripts/mutate.py, fastest first.)"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import pytest
import torch

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker: no oversubscribed cores
    torch.set_num_threads(1)

from test_learning import config  # noqa: E402  (the organism with a first-token reward)

from assay.rewards import get_reward, register_reward  # noqa: E402
from assay.training import Trainer  # noqa: E402
from assay.training.rollout_store import read_rollouts  # noqa: E402
from assay.training.tracking import read_metrics  # noqa: E402
from assay.verifiers.verdict import STATUSES  # noqa: E402

# -- what a step writes down ------------------------------------------------------------------


@register_reward("half_test", kind="intrinsic", binary=False)
def half(group):
    return [0.5] * len(group)


def test_a_step_logs_what_it_returns_and_syncs_the_engine(tmp_path):
    """Each step's metrics (weighted parts, monitors, a collapse) reach metrics.jsonl, its
    completions reach rollouts.jsonl.gz, the schedule advances, and the rollout engine is
    told of every update (a vLLM engine would otherwise sample from stale weights)."""
    cfg = config(
        tmp_path / "run",
        reward="0.5*first_token_paren_test + 0.5*half_test",
        monitor="first_token_paren_test",
        collapse_signal="reward",
        collapse_threshold="2.0",  # every reward is below 2: collapse at the first step
        lr_schedule="cosine",
        warmup_steps="2",
        eval_every="3",  # validation at steps 1, 4, ...
    )
    trainer = Trainer(cfg, quiet=True)
    synced = []
    real_sync = trainer.engine.sync_weights
    trainer.engine.sync_weights = lambda model: (synced.append(model), real_sync(model))
    try:
        rows = [trainer.step() for _ in range(2)]
    finally:
        trainer.log.close()
    assert synced == [trainer.model, trainer.model]
    assert rows[0]["lr"] == pytest.approx(1.5e-3) and rows[1]["lr"] == pytest.approx(3e-3)  # warm-up
    for row in rows:
        assert row["reward/half_test"] == pytest.approx(0.5)
        assert "reward/first_token_paren_test" in row and "monitor/first_token_paren_test" in row
    assert rows[0]["collapse"]["signal"] == "reward" and "collapse" not in rows[1]
    assert "val_accuracy" in rows[0] and "val_accuracy" not in rows[1]
    logged = read_metrics(tmp_path / "run")
    assert [r["step"] for r in logged] == [1, 2]
    assert logged[0]["collapse"] == rows[0]["collapse"]
    assert logged[1]["reward/half_test"] == pytest.approx(0.5)
    completions = read_rollouts(tmp_path / "run" / "rollouts.jsonl.gz")
    assert len(completions) == 2 * 4 * 8 and {c["step"] for c in completions} == {1, 2}
    for row in rows:  # every completion's verdict is counted under its status
        assert sum(row[f"verdicts/{status}"] for status in STATUSES) == 4 * 8
    for row in rows:  # the step's figures are those of its stored completions
        mine = [c for c in completions if c["step"] == row["step"]]
        assert row["completion_length"] == pytest.approx(np.mean([c["n_tokens"] for c in mine]))
        assert row["truncated_ratio"] == pytest.approx(np.mean([not c["finished"] for c in mine]))
        assert row["gt_accuracy"] == pytest.approx(np.mean([c["status"] == "correct" for c in mine]))
        assert row["answer_rate"] == pytest.approx(np.mean([c["answer"] is not None for c in mine]))
        assert row["reward"] == pytest.approx(np.mean([c["reward"] for c in mine]))
        tokens = sum(c["n_tokens"] for c in mine)  # entropy: the mean over every completion token
        assert row["tokens"] > tokens  # completions and their prompts
        assert row["entropy"] == pytest.approx(sum(c["mean_entropy"] * c["n_tokens"] for c in mine) / tokens)


def test_micro_batches_give_the_update_of_the_whole_batch(tmp_path):
    """Unfused micro-batches (log-probs recomputed, losses summed) and the fused whole batch
    (the reward pass's graph reused) must make the same update: fusing only saves a pass."""
    rows, weights = {}, {}
    for size in (0, 8):
        trainer = Trainer(config(tmp_path / f"mb{size}", micro_batch_size=str(size)), quiet=True)
        try:
            rows[size] = trainer.step()
        finally:
            trainer.log.close()
        weights[size] = [p.detach().clone() for p in trainer.model.parameters()]
        assert 0.0 < rows[size]["step_time"] < 600.0
    assert rows[8]["loss"] == pytest.approx(rows[0]["loss"], rel=1e-5)
    assert rows[8]["grad_norm"] == pytest.approx(rows[0]["grad_norm"], rel=1e-5)
    # Adam's first step moves each weight by about the learning rate (3e-3); summation order
    # leaves differences of about 1e-4 on near-zero gradients
    assert max(float((a - b).abs().max()) for a, b in zip(weights[0], weights[8], strict=True)) < 3e-4


def test_micro_batches_take_the_statistics_from_the_loss_pass_when_no_reward_reads_them(tmp_path):
    """Micro-batched, with rewards that read no per-token statistics, the step has no
    scoring pass of its own (the loss pass gives them), and everything it writes down is
    what the scoring pass gave: the same metrics, the same stored completions, bit for bit."""
    rows, stored, passes = {}, {}, {}
    for early in (True, False):
        out = tmp_path / f"early-{early}"
        trainer = Trainer(config(out, micro_batch_size="8", beta="0.05"), quiet=True)
        assert trainer.stats_before_loss is False  # first_token_paren_test reads the text
        trainer.stats_before_loss = early
        calls = []
        real = trainer.token_stats
        trainer.token_stats = lambda batch, grad, _real=real, _calls=calls: (_calls.append(grad), _real(batch, grad=grad))[1]
        try:
            rows[early] = [trainer.step() for _ in range(2)]
        finally:
            trainer.log.close()
        passes[early] = len(calls)
        stored[early] = read_rollouts(out / "rollouts.jsonl.gz")
    assert passes == {True: 2, False: 0}
    timing = ("step_time", "sample_time", "verify_time", "tokens_per_s", "samples_per_s")
    for a, b in zip(rows[True], rows[False], strict=True):
        keys = {k for k in a if not any(t in k for t in timing)}
        assert keys == {k for k in b if not any(t in k for t in timing)}
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}, [k for k in keys if a[k] != b[k]]
    assert stored[True] == stored[False]


#: the groups each call of `tied_half` has scored; a test resets it before each trainer
TIED_CALLS = [0]


@register_reward("tied_half_test", kind="intrinsic", binary=True)
def tied_half(group):
    """Every other group scored all 0 (its advantages all 0), the others half 1."""
    TIED_CALLS[0] += 1
    if TIED_CALLS[0] % 2:
        return [0.0] * len(group.completions)
    return [float(i % 2) for i in range(len(group.completions))]


@register_reward("tied_all_test", kind="intrinsic", binary=True)
def tied_all(group):
    return [1.0] * len(group.completions)


@register_reward("tied_none_test", kind="intrinsic", binary=True)
def tied_none(group):
    return [float(i % 2) for i in range(len(group.completions))]


def _graded_steps(out, reference: bool, rewards: list[str], early: bool = False, **sets):
    """Steps with these rewards (one per step); with `reference`, every used row goes
    through the gradient pass (what the trainer did before it read rows at advantage 0
    without gradients). The rows each pass read and whether with gradients, the metrics,
    the stored completions and the weights after each step."""
    TIED_CALLS[0] = 0
    trainer = Trainer(config(out, reward=rewards[0], **sets), quiet=True)
    if reference:
        trainer._pulls = lambda used, advantages, ref: used
    trainer.stats_before_loss = early  # as a reward that reads the statistics would set it
    passes = []
    real = trainer._pass
    trainer._pass = lambda batch, rows, shared, **kw: (
        passes.append((int(rows.numel()), torch.is_grad_enabled())), real(batch, rows, shared, **kw))[1]
    rows, weights = [], []
    try:
        for name in rewards:
            trainer.reward = get_reward(name)
            rows.append(trainer.step())
            weights.append([p.detach().clone() for p in trainer.model.parameters()])
    finally:
        trainer.log.close()
    return passes, rows, read_rollouts(out / "rollouts.jsonl.gz"), weights


@pytest.mark.parametrize("micro", ["0", "8"])
@pytest.mark.parametrize("beta", ["0", "0.05"])
def test_rows_at_advantage_0_are_read_without_gradients(tmp_path, micro, beta):
    """A row whose group's rewards are all equal (advantage 0) adds exactly 0 to the
    gradient, so its pass runs without one; with a KL term (β > 0) every row pulls and
    has one. The update, the metrics and the stored completions are those of every row
    through the gradient pass, to rounding (fewer rows in each sum)."""
    sets = {"micro_batch_size": micro, "beta": beta}
    steps = ["tied_half_test"] * 2
    fast, fast_rows, fast_stored, fast_weights = _graded_steps(tmp_path / "fast", False, steps, **sets)
    ref, ref_rows, ref_stored, ref_weights = _graded_steps(tmp_path / "ref", True, steps, **sets)
    n = 4 * 8  # rows a step; half its groups tied
    assert sum(k for k, grad in ref if grad) == 2 * n and sum(k for k, grad in ref if not grad) == 0
    with_grad = sum(k for k, grad in fast if grad)
    assert with_grad == (2 * n if beta != "0" else n)  # two steps, half the rows each
    assert sum(k for k, _ in fast) == 2 * n  # every row's statistics, once a step
    for a, b in zip(fast_rows, ref_rows, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-9)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
        assert a["entropy"] == pytest.approx(b["entropy"], rel=1e-5)
        assert a["kl"] == pytest.approx(b["kl"], rel=1e-4, abs=1e-9)
        assert a["clip_ratio"] == b["clip_ratio"] == 0.0  # one update on fresh rollouts
    assert [c["completion"] for c in fast_stored] == [c["completion"] for c in ref_stored]
    assert [c["sum_logprob"] for c in fast_stored] == pytest.approx([c["sum_logprob"] for c in ref_stored], abs=1e-4)
    for mine, theirs in zip(fast_weights[-1], ref_weights[-1], strict=True):  # as in the test above
        assert float((mine - theirs).abs().max()) < 3e-4


def test_micro_batches_after_a_scoring_pass_backpropagate_only_the_rows_that_pull(tmp_path):
    """Micro-batched with the statistics from a pass before the rewards (a reward reads
    them), each update recomputes the log-probs of the rows with a gradient only."""
    sets = {"micro_batch_size": "8", "beta": "0"}
    steps = ["tied_half_test"] * 2
    fast, fast_rows, _, fast_weights = _graded_steps(tmp_path / "fast", False, steps, True, **sets)
    ref, ref_rows, _, ref_weights = _graded_steps(tmp_path / "ref", True, steps, True, **sets)
    assert [grad for _, grad in fast + ref] == [True] * len(fast + ref)  # no pass for statistics
    assert sum(k for k, _ in fast) == 4 * 8 and sum(k for k, _ in ref) == 2 * 4 * 8
    for a, b in zip(fast_rows, ref_rows, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-9)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
        assert a["entropy"] == b["entropy"]  # from the same scoring pass
    for mine, theirs in zip(fast_weights[-1], ref_weights[-1], strict=True):
        assert float((mine - theirs).abs().max()) < 3e-4


def test_the_whole_batch_after_a_pass_with_gradients_reads_every_row_in_its_loss(tmp_path, monkeypatch):
    """The whole batch with the statistics from one pass with gradients (a reward reads
    them) backpropagates through every row whatever the loss reads: the loss then reads
    every used row, tied or not, and logs the figure it logged before rows at advantage 0
    were left out elsewhere."""
    import assay.training.trainer as trainer_module

    seen = []
    real = trainer_module.policy_loss
    monkeypatch.setattr(trainer_module, "policy_loss",
                        lambda logprobs, *a, **kw: (seen.append(logprobs.size(0)), real(logprobs, *a, **kw))[1])
    passes, _, _, _ = _graded_steps(tmp_path / "run", False, ["tied_half_test"], True, beta="0")
    assert seen == [4 * 8] and passes == []  # one loss over every row; no pass of its own


def test_a_step_whose_groups_are_all_tied_still_steps_the_optimizer(tmp_path):
    """Every group tied: no row has a gradient, so no backward pass runs; the optimizer
    still steps on zero gradients, as it did after a backward pass of zeros (AdamW's
    momentum and weight decay move the weights), bit for bit."""
    steps = ["tied_none_test", "tied_all_test"]  # the first step the same in both
    fast, _, _, fast_weights = _graded_steps(tmp_path / "fast", False, steps, weight_decay="0.1")
    _, _, _, ref_weights = _graded_steps(tmp_path / "ref", True, steps, weight_decay="0.1")
    assert not any(grad for _, grad in fast[-1:])  # the last step's only pass: no gradient
    moved = [not torch.equal(a, b) for a, b in zip(fast_weights[0], fast_weights[1], strict=True)]
    assert all(moved)
    for mine, theirs in zip(fast_weights[1], ref_weights[1], strict=True):
        assert torch.equal(mine, theirs)


@register_reward("reads_logprobs_undeclared_test", kind="intrinsic", binary=False)
def reads_logprobs(group):  # reads the token statistics without `needs = {"token_stats"}`
    return [float(np.sum(c.logprobs)) for c in group.completions]


def test_a_reward_that_reads_statistics_it_did_not_declare_fails_loudly(tmp_path):
    from assay.rewards import RewardError

    trainer = Trainer(config(tmp_path / "run", micro_batch_size="8",
                             reward="reads_logprobs_undeclared_test"), quiet=True)
    try:
        with pytest.raises(RewardError, match="without declaring needs"):
            trainer.step()
    finally:
        trainer.log.close()


def test_kl_is_measured_before_the_first_update_and_clipping_is_counted(tmp_path):
    """With a reference, step 1's KL is exactly 0 (the policy is the reference until the
    first update; KL is taken on the first of `updates_per_batch` iterations) and later
    steps' is positive; the second iteration's ratios leave the clip range and are counted."""
    trainer = Trainer(
        config(tmp_path / "run", beta="0.05", updates_per_batch="2", learning_rate="0.02"), quiet=True
    )
    try:
        rows = [trainer.step() for _ in range(2)]
    finally:
        trainer.log.close()
    assert rows[0]["kl"] == 0.0 and rows[1]["kl"] > 0.0
    # the share of the two iterations' tokens; the first's ratios are all 1: none clipped
    assert 0.0 < rows[0]["clip_ratio"] <= 0.5
    without = Trainer(config(tmp_path / "none", log_kl="false"), quiet=True)
    try:
        assert without.reference is None and math.isnan(without.step()["kl"])  # no reference, no KL
    finally:
        without.log.close()


def test_a_step_with_nothing_to_learn_leaves_the_weights_alone(tmp_path, monkeypatch):
    """After a normal step, every verifier call breaks: every completion is masked, every
    group skipped. The step must report that, and the optimizer must not move a weight:
    with zeroed gradients instead of none, AdamW's momentum from the first step (and its
    decay) would move them anyway."""
    from assay.envs.countdown import CountdownEnv

    trainer = Trainer(config(tmp_path / "run", weight_decay="0.1"), quiet=True)
    try:
        trainer.step()

        def broken(self, task, answer):
            raise RuntimeError("the verifier broke")

        monkeypatch.setattr(CountdownEnv, "check", broken)
        before = [p.detach().clone() for p in trainer.model.parameters()]
        row = trainer.step()
    finally:
        trainer.log.close()
    assert row["masked_completions"] == 4 * 8 and row["skipped_groups"] == 4
    assert row["clip_ratio"] == 0.0 and row["grad_norm"] == 0.0 and math.isnan(row["kl"])
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_train_layers_updates_only_the_last_layers(tmp_path):
    """`train_layers=1`: the last decoder layer and the final norm move; the embedding and
    every lower layer stay as they were, and the optimizer holds state for nothing else."""
    trainer = Trainer(config(tmp_path / "run", train_layers="1"), quiet=True)
    layers = trainer.model.get_decoder().layers
    assert len(layers) >= 2  # there is a layer below to stay frozen
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    try:
        trainer.step()
    finally:
        trainer.log.close()
    last = f"layers.{len(layers) - 1}."
    moved = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(last in n or n.endswith("norm.weight") for n in moved), sorted(moved)
    assert any(last in n for n in moved)
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    state = trainer.optimizer.state_dict()["param_groups"][0]["params"]
    assert len(state) == len(trainable) < len(before)


def test_train_layers_beyond_the_model_is_one_line(tmp_path):
    from assay.training.policy import ModelLoadError

    with pytest.raises(ModelLoadError, match="train_layers=99, but the model has"):
        Trainer(config(tmp_path / "run", train_layers="99"), quiet=True)
