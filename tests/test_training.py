"""The GRPO trainer on the model organism: metrics, rewards, determinism, resume, CLI."""

from __future__ import annotations

import json
import math
import os
import tempfile

import pytest
import torch
import yaml
from click.testing import CliRunner

# One prior cache for the whole test session (and across sessions): the builder's file lock
# makes parallel workers wait for one build instead of racing.
os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker: no oversubscribed cores
    import torch

    torch.set_num_threads(1)

from assay.cli import cli  # noqa: E402
from assay.rewards import BUILTIN  # noqa: E402
from assay.training import ConfigError, Trainer, resolve  # noqa: E402
from assay.training.loss import group_advantages  # noqa: E402
from assay.training.tracking import read_metrics  # noqa: E402

REQUIRED = (
    "step",
    "reward",
    "reward_std",
    "reward_accuracy",
    "gt_accuracy",
    "entropy",
    "completion_length",
    "frac_reward_zero_std",
    "kl",
    "clip_ratio",
    "tokens",
    "step_time",
)
SMALL = {
    "prompts_per_step": "4",
    "group_size": "4",
    "val_size": "8",
    "val_samples": "2",
    "eval_every": "2",
    "progress": "false",
    "train_size": "64",
}


def small_config(out, reward="verifier", steps=2, **sets):
    return resolve(
        sets={**SMALL, **{k: str(v) for k, v in sets.items()}},
        flags={"model": "organism:tiny", "out": str(out), "reward": reward, "steps": steps},
    )


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in ("step_time", "verify_time")} for row in rows]


def test_advantages_by_hand():
    adv, std = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0]), 4)
    s = math.sqrt(1 / 3)  # unbiased std of [1, 0, 0, 1]
    assert torch.allclose(adv[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]) / (s + 1e-4))
    assert torch.equal(adv[4:], torch.zeros(4))  # a zero-std group teaches nothing
    unscaled, _ = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), 4, scale=False)
    assert torch.equal(unscaled, torch.tensor([0.5, -0.5, -0.5, 0.5]))


#: The range each built-in reward's values lie in (so the logged mean must too).
REWARD_RANGE = {
    "verifier": (0.0, 1.0),
    "ground_truth": (0.0, 1.0),
    "self_verify": (0.0, 1.0),
    "majority_vote": (0.0, 1.0),
    "semantic_entropy": (0.0, 1.0),
    "probability": (0.0, 1.0),
    "random": (0.0, 1.0),
    "format": (0.0, 1.0),
    "incorrect_label": (0.0, 1.0),
    "self_certainty": (0.0, math.inf),
    "token_entropy": (-math.inf, 0.0),
    "trajectory_entropy": (-math.inf, 0.0),
}


def test_every_reward_trains_the_organism(tmp_path):
    firsts = {}
    assert set(REWARD_RANGE) == set(BUILTIN)
    for name in sorted(BUILTIN):
        trainer = Trainer(small_config(tmp_path / name, reward=name), quiet=True)
        start = [p.detach().clone() for p in trainer.model.parameters()]
        trainer.train()
        rows = read_metrics(tmp_path / name)
        assert [r["step"] for r in rows] == [1, 2]
        for row in rows:
            for key in REQUIRED:
                assert row[key] is not None and math.isfinite(row[key]), (name, key, row)
            low, high = REWARD_RANGE[name]
            assert low <= row["reward"] <= high, (name, row["reward"])
            assert 0.0 <= row["reward_accuracy"] <= 1.0 and 0.0 <= row["gt_accuracy"] <= 1.0
            assert row["completion_length"] >= 1 and row["tokens"] > row["completion_length"]
            # a step whose groups all tied has no advantage, hence no gradient; any other has both
            learned = row["frac_reward_zero_std"] < 1.0
            assert (row["grad_norm"] > 0) == learned, (name, row)
        moved = any(not torch.equal(a, b.detach()) for a, b in zip(start, trainer.model.parameters(), strict=True))
        assert moved == any(row["frac_reward_zero_std"] < 1.0 for row in rows), name
        assert rows[0]["val_accuracy"] is not None and "val_greedy_accuracy" in rows[0]
        firsts[name] = rows[0]["reward"]
    # the same seed gives the same rollouts at step 1, so rewards differ only by definition
    intrinsic = (
        "self_certainty",
        "token_entropy",
        "trajectory_entropy",
        "probability",
        "semantic_entropy",
        "majority_vote",
    )
    assert len({round(firsts[n], 6) for n in intrinsic}) == len(intrinsic), firsts
    assert firsts["verifier"] == firsts["ground_truth"]  # countdown: no partial credit by default
    # the wrong-label control pays for other completions than the verifier on the same rollouts
    assert firsts["incorrect_label"] != firsts["verifier"], firsts


def test_same_seed_same_metrics_and_another_seed_differs(tmp_path):
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        config = small_config(tmp_path / name, reward="majority_vote", steps=3, seed=seed)
        Trainer(config, quiet=True).train()
        runs.append(without_timing(read_metrics(tmp_path / name)))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_resume_loses_and_duplicates_no_step(tmp_path):
    whole = tmp_path / "whole"
    Trainer(small_config(whole, steps=5, save_every=2), quiet=True).train()

    cut = tmp_path / "cut"
    trainer = Trainer(small_config(cut, steps=5, save_every=2), quiet=True)
    for _ in range(3):  # steps 1-3 logged, checkpoint after step 2, then the process "dies"
        trainer.step()
        if trainer.step_count == 2:
            trainer.save()
    del trainer
    assert [r["step"] for r in read_metrics(cut)] == [1, 2, 3]

    resumed = Trainer(small_config(cut, steps=5, save_every=2), resume=True, quiet=True)
    assert resumed.step_count == 2
    resumed.train()
    rows = read_metrics(cut)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert without_timing(rows) == without_timing(read_metrics(whole))


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    Trainer(small_config(tmp_path, steps=1), quiet=True).train()
    with pytest.raises(Exception, match="already holds a run"):
        Trainer(small_config(tmp_path, steps=1), quiet=True)


def test_micro_batches_and_several_updates_per_batch(tmp_path):
    config = small_config(
        tmp_path,
        reward="self_certainty",
        steps=2,
        micro_batch_size=5,
        updates_per_batch=2,
        loss_type="grpo",
        beta=0.05,
        learning_rate=0.01,
    )
    Trainer(config, quiet=True).train()
    rows = read_metrics(tmp_path)
    assert rows[1]["clip_ratio"] > 0  # the second update sees ratios away from 1
    assert rows[1]["kl"] > 0


def test_config_precedence_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 0.002\ngroup_size: 4\nenv:\n  max_target: 500\n")
    config = resolve(
        file=str(path),
        sets={"group_size": "6", "env.vote_key": "value"},
        flags={"model": "organism", "steps": 7},
    )
    assert config.learning_rate == 0.002  # file beats the organism's recommendation
    assert config.group_size == 6  # --set beats the file
    assert config.prompts_per_step == 16  # the organism's recommendation beats the default
    assert config.env_options["max_value"] == 9 and config.env_options["vote_key"] == "value"
    assert config.steps == 7
    with pytest.raises(ConfigError, match="unknown option 'nope'"):
        resolve(sets={"nope": "1"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 3\n  oops: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+"):
        resolve(file=str(bad))
    bad.write_text("learning_rate: fast\n")  # a bad value names the file, as a bad key does
    with pytest.raises(ConfigError, match=r"^.*bad\.yaml: option 'learning_rate' expects float"):
        resolve(file=str(bad))


def test_model_env_options_apply_only_to_the_env_the_model_was_built_for(tmp_path):
    from assay.organism import ENV_OPTIONS

    organism = resolve(flags={"model": "organism", "env": "countdown"})
    assert organism.env_options == ENV_OPTIONS and organism.prompts_per_step == 16
    other_env = resolve(flags={"model": "organism", "env": "math"})
    assert other_env.env_options == {} and other_env.prompts_per_step == 16
    # A model folder says which env its options are for; one from before "env" was
    # recorded is countdown's.
    folder = tmp_path / "model"
    folder.mkdir()
    meta = {"env_options": {"max_value": 7}, "train_defaults": {"group_size": 3}}
    (folder / "assay.json").write_text(json.dumps({**meta, "env": "math"}))
    assert resolve(flags={"model": str(folder), "env": "countdown"}).env_options == {}
    assert resolve(flags={"model": str(folder), "env": "math"}).env_options == {"max_value": 7}
    (folder / "assay.json").write_text(json.dumps(meta))
    legacy = resolve(flags={"model": str(folder), "env": "countdown"})
    assert legacy.env_options == {"max_value": 7} and legacy.group_size == 3


def test_cli_train_writes_metrics_config_and_checkpoints(tmp_path):
    out = tmp_path / "run"
    args = [
        "train",
        "--env",
        "countdown",
        "--reward",
        "self_verify",
        "--model",
        "organism:tiny",
        "--steps",
        "2",
        "--out",
        str(out),
        "--seed",
        "3",
        "--quiet",
    ]
    args += [f"--set={k}={v}" for k, v in SMALL.items()] + ["--set", "save_every=1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(k in rows[0] for k in REQUIRED)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["reward"] == "self_verify" and saved["seed"] == 3
    assert (out / "checkpoints" / "step-000002" / "model.safetensors").exists()

    # --resume continues the same folder: two more steps, none repeated
    result = CliRunner().invoke(
        cli, ["train", "--out", str(out), "--resume", "--steps", "4", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--reward", "nope"], "unknown reward 'nope'"),
        (["--env", "nope"], "unknown env 'nope'"),
        (["--set", "nope=1"], "unknown option 'nope'"),
        (["--set", "env.nope=1"], "unknown option 'nope' for env 'countdown'"),
        (["--model", "organism:nope"], "unknown organism preset"),
    ],
)
def test_cli_train_usage_errors_are_one_line(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "x"), *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "x").exists()


def test_killed_run_resumes_without_losing_or_repeating_a_step(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    assay = str(Path(sys.executable).parent / "assay")
    out = tmp_path / "run"
    sets = [f"--set={k}={v}" for k, v in {**SMALL, "save_every": 2}.items()]
    base = [assay, "train", "--model", "organism:tiny", "--out", str(out), "--quiet", *sets]
    proc = subprocess.Popen([*base, "--steps", "1000"], stderr=subprocess.PIPE)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = read_metrics(out)
    assert len(before) >= 5, proc.stderr.read().decode()[-2000:]
    steps = len(before) + 2
    done = subprocess.run(
        [assay, "train", "--out", str(out), "--resume", "--steps", str(steps), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    after = read_metrics(out)
    assert [r["step"] for r in after] == list(range(1, steps + 1))
    kept = [r for r in before if r["step"] <= after[-1]["step"]]
    # rows up to the last checkpoint survive untouched; later ones were re-run identically
    assert without_timing(after[: len(kept)]) == without_timing(kept)


@pytest.mark.parametrize(
    "name", ["organism.yaml", "organism-collapse.yaml", "study-countdown.yaml"]
)
def test_example_configs_resolve(name):
    from pathlib import Path

    config = resolve(file=str(Path(__file__).parents[1] / "configs" / name))
    assert config.reward in BUILTIN and config.steps > 0


def test_missing_optional_engine_is_one_clear_line(tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here, so its absence cannot be shown")
    args = [
        "train",
        "--model",
        "organism:tiny",
        "--set",
        "engine=vllm",
        "--out",
        str(tmp_path / "x"),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert result.output.strip() == (
        "assay: error: engine 'vllm' needs the vllm package: pip install 'assay[vllm]' (GPU only)"
    )


def test_a_code_env_step_reaches_the_sandbox_as_one_parallel_batch(tmp_path, monkeypatch):
    """Every completion of a step goes to the sandbox in one `run_many` call, not one by one."""
    from assay.sandbox import Sandbox, SandboxError

    try:
        Sandbox(workers=1).close()
    except SandboxError as exc:
        pytest.skip(f"local sandbox unavailable: {exc}")
    batches = []
    original = Sandbox.run_many

    def recording(self, jobs, **kwargs):
        jobs = list(jobs)
        batches.append(len(jobs))
        return original(self, jobs, **kwargs)

    monkeypatch.setattr(Sandbox, "run_many", recording)
    # Prompts the organism can read; the programs it writes are judged by running them.
    rows = [{"prompt": f"{a} {b} 1>{a + b:03d}:", "io": [{"stdin": "", "stdout": f"{a + b}\n"}]}
            for a in range(1, 5) for b in range(1, 5)]
    tasks = tmp_path / "code.jsonl"
    tasks.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = resolve(
        sets={**SMALL, "eval_every": "0", "train_file": str(tasks), "val_file": str(tasks),
              "env.timeout": "2"},
        flags={"model": "organism:tiny", "env": "code", "out": str(tmp_path / "run"), "steps": 1},
    )
    Trainer(config, quiet=True).train()
    (row,) = read_metrics(tmp_path / "run")
    counts = {s: row[f"verdicts/{s}"] for s in ("correct", "incorrect", "invalid", "timeout", "error")}
    assert sum(counts.values()) == 16, counts  # 4 prompts x 4 completions
    ran = 16 - counts["invalid"]  # invalid = no code, or code that does not parse: never run
    assert ran >= 2, counts
    assert batches == [ran], f"sandbox batches {batches} for {ran} runnable completions"


def test_a_reward_that_breaks_mid_run_is_one_line_not_a_traceback(tmp_path):
    from assay.rewards import register_reward

    @register_reward("nan_mid_run_test", kind="intrinsic")
    def nan_reward(group):
        return [float("nan")] * len(group)

    sets = [arg for k, v in {**SMALL, "eval_every": "0"}.items() for arg in ("--set", f"{k}={v}")]
    result = CliRunner().invoke(
        cli,
        ["train", "--model", "organism:tiny", "--reward", "nan_mid_run_test", "--steps", "1",
         "--out", str(tmp_path / "run"), "--quiet", *sets],
    )
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("assay: error: step 1: reward 'nan_mid_run_test'"), message
    assert "non-finite" in message and "\n" not in message and "Traceback" not in result.output
