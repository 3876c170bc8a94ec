"""assay rewards as TRL reward functions, and `assay train --backend trl` (real TRL, on CPU)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

import forked_cli
import pytest  # noqa: E402
from conftest import hide_module  # noqa: E402

from assay.envs import get_env  # noqa: E402
from assay.integrations import trl as trl_backend  # noqa: E402
from assay.integrations.trl import TASK_COLUMN, TRLError, reward_funcs, task_dataset  # noqa: E402


def call(func, tasks_per_completion, completions, **extra):
    """What TRL's GRPOTrainer passes: prompts, completions, ids and every other column."""
    metrics = {}
    out = func(
        prompts=[t.prompt for t in tasks_per_completion],
        completions=completions,
        completion_ids=[[0]] * len(completions),
        **{TASK_COLUMN: [json.dumps(t.to_dict()) for t in tasks_per_completion]},
        trainer_state=None,
        log_metric=lambda name, value: metrics.__setitem__(name, value),
        **extra,
    )
    return out, metrics


def test_verifier_rewards_and_verdict_counts():
    env = get_env("countdown")
    a = env.make_task({"numbers": [2, 3], "target": 5})
    b = env.make_task({"numbers": [4, 1], "target": 3})
    func = reward_funcs(env, "verifier", num_generations=2)
    out, metrics = call(func, [a, a, b, b], ["<answer>2+3</answer>", "<answer>2*3</answer>",
                                             "<answer>4-1</answer>", "no answer"])
    assert out == [1.0, 0.0, 1.0, 0.0]
    assert metrics["verdicts/correct"] == 2 and metrics["verdicts/incorrect"] == 1
    assert metrics["verdicts/invalid"] == 1 and metrics["gt_accuracy"] == 0.5


def test_majority_vote_is_per_prompt_group():
    env = get_env("countdown", vote_key="value")
    a = env.make_task({"numbers": [2, 3], "target": 5})
    b = env.make_task({"numbers": [4, 1], "target": 3})
    func = reward_funcs(env, "majority_vote", num_generations=3)
    # a's group agrees on 6 (wrong); b's on 3. Pooled, 6 would not be b's majority.
    out, _ = call(func, [a, a, a, b, b, b],
                  ["<answer>2*3</answer>", "<answer>3*2</answer>", "<answer>2+3</answer>",
                   "<answer>4-1</answer>", "<answer>4*1</answer>", "<answer>4-1</answer>"])
    assert out == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]


def test_conversational_completions_are_read():
    env = get_env("countdown")
    a = env.make_task({"numbers": [2, 3], "target": 5})
    func = reward_funcs(env, "verifier")
    out, _ = call(func, [a], [[{"role": "assistant", "content": "<answer>3+2</answer>"}]])
    assert out == [1.0]


def test_a_split_group_is_refused_for_group_rewards_only():
    env = get_env("countdown")
    a = env.make_task({"numbers": [2, 3], "target": 5})
    with pytest.raises(TRLError, match="multiple of num_generations"):
        call(reward_funcs(env, "majority_vote", num_generations=4), [a, a], ["<answer>5</answer>"] * 2)
    out, _ = call(reward_funcs(env, "verifier", num_generations=4), [a, a],
                  ["<answer>2+3</answer>"] * 2)
    assert out == [1.0, 1.0]


@pytest.mark.parametrize("name", ["self_certainty", "token_entropy", "trajectory_entropy",
                                  "probability", "0.5*verifier + 0.5*self_certainty",
                                  "self_verify"])
def test_rewards_trl_cannot_feed_are_refused_with_the_reason(name):
    with pytest.raises(TRLError, match="per-token statistics|judge"):
        reward_funcs(get_env("countdown"), name)


def test_an_error_verdict_is_none_not_zero(monkeypatch):
    env = get_env("countdown")
    a = env.make_task({"numbers": [2, 3], "target": 5})
    from assay.verifiers import Verdict

    monkeypatch.setattr(env, "verify_many",
                        lambda pairs, **kw: [Verdict.error("broke")] + [Verdict(1.0, "correct", "")])
    out, metrics = call(reward_funcs(env, "verifier"), [a, a], ["x", "<answer>2+3</answer>"])
    assert out == [None, 1.0] and metrics["verdicts/error"] == 1


def test_task_dataset_columns():
    env = get_env("countdown")
    tasks = env.generate(3, seed=0)
    data = task_dataset(env, tasks)
    assert data.column_names == ["prompt", TASK_COLUMN]
    assert json.loads(data[1][TASK_COLUMN])["numbers"] == tasks[1].fields["numbers"]


@pytest.mark.slow
def test_train_backend_trl_writes_metrics(tmp_path):
    out = tmp_path / "run"
    proc = forked_cli.run(
        ["train", "--backend", "trl", "--model", "organism:tiny", "--steps", "3",
         "--quiet", "--out", str(out), "--set", "prompts_per_step=4", "--set", "group_size=4",
         "--set", "max_new_tokens=16"], timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for row in rows:  # assay's keys, and every completion of the step counted once
        assert {"reward", "completion_length", "entropy", "gt_accuracy"} <= set(row)
        assert sum(row[f"verdicts/{s}"] for s in ("correct", "incorrect", "invalid", "timeout",
                                                  "error")) == 16
        assert row["reward"] == pytest.approx(row["verdicts/correct"] / 16)  # verifier: 1 or 0
    assert json.loads((out / "summary.json").read_text())["backend"] == "trl"
    # issue 26: --quiet prints no dict of TRL's logs, and the trained model is kept
    assert "{'" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    last = out / "checkpoints" / "last"
    assert (last / "config.json").is_file() and (last / "model.safetensors").is_file()
    assert not (out / "trl").exists()  # no empty folder of TRL's beside it
    assert json.loads((last / "assay.json").read_text())["env"] == "countdown"
    for name in (last, out):  # the run named by its folder too: its checkpoints/last
        evaluated = forked_cli.run(
            ["eval", "--model", str(name), "-n", "2", "--samples", "1", "--quiet",
             "--set", "max_new_tokens=8"], timeout=600)
        assert evaluated.returncode == 0, evaluated.stderr[-2000:]


def test_train_backend_trl_refuses_token_stat_rewards_in_one_line(tmp_path):
    proc = forked_cli.run(["train", "--backend", "trl", "--reward", "self_certainty",
                           "--out", str(tmp_path / "x")], timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "per-token statistics" in lines[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("option", ["train_layers=1", "tensorboard=true", "stop_on_collapse=true",
                                    "save_every=1", "micro_batch_size=4", "val_size=8"])
def test_train_backend_trl_refuses_an_option_it_would_ignore(tmp_path, option):
    proc = forked_cli.run(["train", "--backend", "trl", "--model", "organism:tiny",
                           "--set", option, "--out", str(tmp_path / "x")], timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no counterpart" in lines[0] and option.split("=")[0] in lines[0]
    assert not (tmp_path / "x").exists()


def test_trl_options_at_what_trl_does_anyway_pass_and_adam_betas_carry_over():
    from assay.integrations.trl import grpo_config, unsupported_options
    from assay.training import resolve

    config = resolve(sets={"train_layers": "0", "save_every": "0", "tensorboard": "false",
                           "adam_beta2": "0.99"}, flags={"model": "organism:tiny"})
    assert unsupported_options(config, {"train_layers", "save_every", "tensorboard"}) == []
    # the organism's own settings (not chosen by the user) are never refused
    assert unsupported_options(config, set()) == []
    assert unsupported_options(config, {"keep_checkpoints"}) == [f"keep_checkpoints={config.keep_checkpoints}"]
    made = grpo_config(config, "unused")
    assert (made.adam_beta1, made.adam_beta2) == (0.9, 0.99)


def test_missing_trl_is_one_clear_line(monkeypatch):
    hide_module(monkeypatch, "trl")
    with pytest.raises(TRLError, match=r"pip install 'assay\[trl\]'"):
        trl_backend.require_trl()


def test_docs_name_every_module_of_assay_that_imports_trl():
    root = Path(__file__).resolve().parent.parent
    importers = sorted(str(p.relative_to(root)) for p in (root / "assay").rglob("*.py")
                       if any(line.strip().startswith(("import trl", "from trl"))
                              for line in p.read_text().splitlines()))
    assert importers == ["assay/integrations/trl.py"]
    text = (root / "docs" / "training.md").read_text()
    bullet = text[text.index("- `trl` (in `dev`"):].split("\n- ")[0]
    assert "assay/integrations/trl.py" in bullet and "only the tests" not in bullet


# -- multi-turn envs through TRL's rollout hook (trl_episodes.py) -------------------------------


def test_the_episode_rollout_masks_observations_and_hands_over_the_last_reply():
    """The rollout TRL calls: one completion per prompt it was given (a prompt's copies
    side by side), observations masked out, and the last reply for the reward."""
    from types import SimpleNamespace

    from assay.integrations.trl_episodes import episode_rollout
    from assay.training.policy import load_policy, resolve_model_path

    model, tokenizer = load_policy(resolve_model_path("organism:code-tiny", None, quiet=True))
    env = get_env("code", feedback="tests", max_turns=2, source="synth", prompt_style="compact",
                  families=("int",), timeout=2.0)
    tasks = env.generate(2, seed=0)
    logged = []
    trainer = SimpleNamespace(
        processing_class=tokenizer, model=model,
        args=SimpleNamespace(temperature=1.0, top_p=1.0, max_completion_length=48),
        accelerator=SimpleNamespace(unwrap_model=lambda m: m),
        _log_metric=lambda name, value: logged.append(name))
    try:
        rollout = episode_rollout(env, tasks, seed=0)
        prompts = [tasks[0].prompt] * 3 + [tasks[1].prompt] * 3
        out = rollout(prompts, trainer)
    finally:
        env.close()
    assert len(out["completion_ids"]) == len(out["env_mask"]) == len(out["prompt_ids"]) == 6
    assert out["prompt_ids"][0] == list(tokenizer(tasks[0].prompt)["input_ids"])
    assert {"turns", "tool_calls"} <= set(logged)
    two_turns = 0
    for ids, mask, last in zip(out["completion_ids"], out["env_mask"], out["assay_final_reply"],
                               strict=True):
        assert len(ids) == len(mask) and mask[0] == 1
        if 0 in mask:  # a second turn: the observation is masked, the reply after it trained
            two_turns += 1
            assert mask[-1] == 1
            after = ids[len(mask) - mask[::-1].index(0):]  # the last reply's tokens
            assert tokenizer.decode(after, skip_special_tokens=True) == last
    assert two_turns > 0  # the tiny prior fails visible tests: feedback was given


@pytest.mark.slow
def test_train_backend_trl_plays_whole_episodes(tmp_path):
    out = tmp_path / "run"
    proc = forked_cli.run(
        ["train", "--backend", "trl", "--model", "organism:code-tiny", "--env", "code",
         "--steps", "2", "--quiet", "--out", str(out), "--set", "env.feedback=tests",
         "--set", "env.max_turns=2", "--set", "prompts_per_step=2", "--set", "group_size=4"], timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert 1 < row["turns"] <= 2 and row["tool_calls"] > 0
        assert sum(row[f"verdicts/{s}"] for s in ("correct", "incorrect", "invalid", "timeout",
                                                  "error")) == 8


def test_a_multi_turn_rollout_is_rewarded_on_its_last_reply():
    env = get_env("countdown")
    a = env.make_task({"numbers": [2, 3], "target": 5})
    func = reward_funcs(env, "verifier", num_generations=2)
    # the transcripts end in a right and a wrong answer; the last replies say the opposite
    out, _ = call(func, [a, a], ["<answer>2*3</answer> ... <answer>2+3</answer>",
                                 "<answer>2+3</answer> ... <answer>2*3</answer>"],
                  assay_final_reply=["<answer>2*3</answer>", "<answer>2+3</answer>"])
    assert out == [0.0, 1.0]


def test_a_reward_gets_the_token_ids_trl_passes_and_never_empty_statistics(tmp_path):
    import numpy as np

    from assay.rewards import register_reward
    from assay.rewards import registry as reward_registry
    from assay.rewards.base import RewardError

    env = get_env("countdown")
    a = env.make_task({"numbers": [2, 3], "target": 5})
    before = dict(reward_registry._registered)
    try:
        @register_reward("trl_test_short", kind="intrinsic")
        def short(group):  # training.md's example: shorter is better
            return [1.0 / (1 + len(c.token_ids)) for c in group.completions]

        @register_reward("trl_test_nll", kind="intrinsic")
        def nll(group):  # reads the statistics without saying so (`needs`)
            return [float(np.sum(c.logprobs)) for c in group.completions]

        texts = ["<answer>2+3</answer>", "x"]
        out = reward_funcs(env, "trl_test_short", num_generations=2)(
            prompts=[a.prompt] * 2, completions=texts, completion_ids=[[7, 7, 7], [7]],
            **{TASK_COLUMN: [json.dumps(a.to_dict())] * 2})
        assert out == [0.25, 0.5]
        with pytest.raises(RewardError, match="read the per-token statistics"):  # not [0.0, 0.0]
            reward_funcs(env, "trl_test_nll", num_generations=2)(
                prompts=[a.prompt] * 2, completions=texts, completion_ids=[[1], [2]],
                **{TASK_COLUMN: [json.dumps(a.to_dict())] * 2})
    finally:
        reward_registry._registered.clear()
        reward_registry._registered.update(before)


@pytest.mark.parametrize("column, said", [
    (['{"numbers": [1, 2]}'] * 2, "column 'assay_task', row 0: not a task of env 'countdown': target"),
    (["{not json"] * 2, "column 'assay_task', row 0: not a task's JSON"),
])
def test_a_row_that_is_not_a_task_is_one_line_naming_it(column, said):
    func = reward_funcs(get_env("countdown"), "verifier", num_generations=2)
    with pytest.raises(TRLError) as err:
        func(prompts=["p", "p"], completions=["a", "b"], completion_ids=[[1], [2]], **{TASK_COLUMN: column})
    assert str(err.value).startswith(said), err.value
