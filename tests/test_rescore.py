"""`assay rescore`: rewards recomputed on a run's stored rollouts agree with what the run
logged for the same rewards (as its reward or as monitors)."""

from __future__ import annotations

import json
import os
import tempfile

import pytest
from click.testing import CliRunner

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.cli import cli  # noqa: E402
from assay.training import Trainer, resolve  # noqa: E402
from assay.training.tracking import read_metrics  # noqa: E402

MONITORS = ("self_certainty", "token_entropy", "trajectory_entropy", "probability",
            "majority_vote", "semantic_entropy", "format", "ground_truth")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rescore") / "run"
    config = resolve(
        sets={"prompts_per_step": "4", "group_size": "4", "train_size": "64", "val_size": "8",
              "eval_every": "0", "progress": "false", "monitor": ",".join(MONITORS)},
        flags={"model": "organism:tiny", "out": str(out), "reward": "verifier", "steps": 3},
    )
    Trainer(config, quiet=True).train()
    return out


def test_rescore_reproduces_the_logged_figures(run, tmp_path):
    target = tmp_path / "out.json"
    names = ",".join(("verifier", *MONITORS))
    result = CliRunner().invoke(cli, ["rescore", str(run), "--rewards", names, "-o", str(target)])
    assert result.exit_code == 0, result.output
    data = json.loads(target.read_text())
    assert set(data) == {"steps", "completions", "rewards"}
    assert data["steps"] == 3 and data["completions"] == 3 * 16
    assert list(data["rewards"]) == ["verifier", *MONITORS]
    metrics = read_metrics(run)
    for name, entry in data["rewards"].items():
        assert [p["step"] for p in entry["per_step"]] == [1, 2, 3]
        for point, row in zip(entry["per_step"], metrics, strict=True):
            mean, accuracy = (("reward", "reward_accuracy") if name == "verifier"
                              else (f"monitor/{name}", f"monitor/{name}_accuracy"))
            assert point["mean"] == pytest.approx(row[mean], rel=1e-5, abs=1e-9), (name, point)
            assert point["accuracy"] == row[accuracy], (name, point)
        assert entry["mean"] == pytest.approx(
            sum(p["mean"] for p in entry["per_step"]) / 3, rel=1e-9)  # equal-sized steps
        assert 0.0 <= entry["accuracy"] <= 1.0
    png = target.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rescore_writes_into_the_run_by_default(run):
    result = CliRunner().invoke(cli, ["rescore", str(run), "--rewards", "random,format"])
    assert result.exit_code == 0, result.output
    data = json.loads((run / "rescore.json").read_text())
    assert 0.0 <= data["rewards"]["random"]["mean"] <= 1.0
    assert (run / "rescore.png").exists()


@pytest.mark.parametrize("name", ["metrics.jsonl", "rollouts.jsonl.gz", "config.yaml", "summary.json",
                                  "metrics.png"])
def test_rescore_never_writes_over_the_runs_own_files(run, name):
    before = (run / name).read_bytes() if (run / name).exists() else None
    target = run / name if before is not None else run / "summary.png"  # (no plot: its .json)
    result = CliRunner().invoke(cli, ["rescore", str(run), "--rewards", "random", "-o", str(target)])
    assert result.exit_code == 2, result.output
    assert "is one of the run's own files" in result.output or "the figures are JSON" in result.output
    if before is not None:
        assert (run / name).read_bytes() == before


def test_rescore_may_write_its_own_figures_again(run):
    for _ in range(2):
        result = CliRunner().invoke(cli, ["rescore", str(run), "--rewards", "random", "-o", str(run / "mine.json")])
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rewards", "nonesuch"], "unknown reward 'nonesuch'"),
        (["--rewards", "self_verify"], "reward 'self_verify' needs the policy as its judge"),
        (["--rewards", " , "], "--rewards names no reward"),
    ],
)
def test_rescore_usage_errors_are_one_line(run, args, message):
    result = CliRunner().invoke(cli, ["rescore", str(run), *args])
    assert result.exit_code == 2
    assert result.output.startswith(f"assay: error: {message}") and result.output.count("\n") == 1


def test_rescore_of_a_folder_without_rollouts_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["rescore", str(tmp_path / "none"), "--rewards", "verifier"])
    assert result.exit_code == 2 and "is not a run folder" in result.output
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("env: countdown\n")
    result = CliRunner().invoke(cli, ["rescore", str(tmp_path / "run"), "--rewards", "verifier"])
    assert result.exit_code == 2 and "trained no step" in result.output  # a 0-step run
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1}\n')
    result = CliRunner().invoke(cli, ["rescore", str(tmp_path / "run"), "--rewards", "verifier"])
    assert result.exit_code == 2 and "rollouts.jsonl.gz not found" in result.output
    (tmp_path / "run" / "rollouts.jsonl.gz").write_bytes(b"not gzip")
    result = CliRunner().invoke(cli, ["rescore", str(tmp_path / "run"), "--rewards", "verifier"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output


# -- issue 26: a rollouts file rescore cannot trust is one line, never a partial answer ---------


def synthetic_run(folder, steps=3, **changes):
    """A run folder of `steps` steps of two 2-completion groups, written as the trainer does;
    `changes` replace fields of the first row of step 2."""
    from assay.envs import get_env
    from assay.training.rollout_store import RolloutStore

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text("env: countdown\nreward: verifier\n")
    task = get_env("countdown").generate(1, seed=0)[0].to_dict()
    store = RolloutStore(folder)
    for step in range(1, steps + 1):
        rows = [{"step": step, "prompt": p, "index": j, "task_id": task["id"], "task": task,
                 "completion": "<answer>1+2</answer>", "answer": "1+2",
                 "status": "correct" if j else "incorrect", "score": float(j),
                 "reward": float(j), "masked": False, "finished": True, "n_tokens": 5,
                 "sum_logprob": -2.0, "mean_entropy": 0.5, "mean_self_certainty": 1.0}
                for p in range(2) for j in range(2)]
        if step == 2:
            rows[0].update(changes)
        store.write(rows)
    return folder


def rescore_fails(folder) -> str:
    result = CliRunner().invoke(cli, ["rescore", str(folder), "--rewards", "verifier,probability"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("assay: error: ") and result.output.count("\n") == 1, result.output
    return result.output


def test_a_synthetic_run_rescores(tmp_path):
    result = CliRunner().invoke(cli, ["rescore", str(synthetic_run(tmp_path / "run")),
                                      "--rewards", "verifier,probability"])
    assert result.exit_code == 0, result.output
    assert "12 completions over 3 steps" in result.output


def test_rescore_stops_at_a_corrupt_member(tmp_path):
    run = synthetic_run(tmp_path / "run")
    path = run / "rollouts.jsonl.gz"
    first = len(path.read_bytes()) // 3  # members are about the same size
    data = bytearray(path.read_bytes())
    start = data.find(b"\x1f\x8b\x08", first - 40)
    data[start + 15] ^= 0x55  # inside member 2's compressed data
    path.write_bytes(bytes(data))
    output = rescore_fails(run)
    assert str(path) in output and "member 2" in output and "last good step 1" in output


@pytest.mark.parametrize(
    "change, field",
    [
        ({"n_tokens": 10**12}, "n_tokens"),
        ({"n_tokens": -1}, "n_tokens"),
        ({"n_tokens": 2.5}, "n_tokens"),
        ({"n_tokens": True}, "n_tokens"),
        ({"score": 7.0}, "score"),
        ({"status": "great"}, "status"),
        ({"sum_logprob": "x"}, "sum_logprob"),
        ({"step": "two"}, "step"),
        ({"task": None}, "task"),
        ({"completion": 3}, "completion"),
    ],
)
def test_rescore_names_the_line_and_field_of_a_bad_row(tmp_path, change, field):
    output = rescore_fails(synthetic_run(tmp_path / "run", **change))
    assert "rollouts.jsonl.gz:5: " in output and f"{field}:" in output


@pytest.mark.parametrize("kind", ["link to /dev/zero", "fifo"])
def test_rescore_refuses_rollouts_that_are_not_a_regular_file(tmp_path, kind):
    run = synthetic_run(tmp_path / "run")
    (run / "rollouts.jsonl.gz").unlink()
    if kind == "fifo":
        os.mkfifo(run / "rollouts.jsonl.gz")  # opening it would wait for a writer
    else:
        (run / "rollouts.jsonl.gz").symlink_to("/dev/zero")
    output = rescore_fails(run)
    assert "not a regular file" in output


def test_a_plug_in_reward_that_reads_single_tokens_is_refused_and_one_that_reads_means_is_not(tmp_path):
    import numpy as np

    from assay.rewards import Reward, register_reward
    from assay.rewards.registry import _registered

    class LastToken(Reward):
        name = "last_token_certainty"
        kind = "intrinsic"
        needs = frozenset({"token_stats"})  # token_reads left at its default, "tokens"

        def score(self, group):
            return [float(c.self_certainty[-1]) if len(c) else 0.0 for c in group.completions]

    class MeanCertainty(LastToken):
        name = "mean_certainty_plugin"
        token_reads = "means"

        def score(self, group):
            return [float(np.mean(c.self_certainty)) if len(c) else 0.0 for c in group.completions]

    register_reward(LastToken)
    register_reward(MeanCertainty)
    try:
        run = synthetic_run(tmp_path / "run")
        result = CliRunner().invoke(cli, ["rescore", str(run), "--rewards", "last_token_certainty"])
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert "reward 'last_token_certainty' reads per-token figures beyond their means" in result.output
        mixed = CliRunner().invoke(cli, ["rescore", str(run), "--rewards",
                                         "0.5*verifier+0.5*last_token_certainty"])
        assert mixed.exit_code == 2 and "beyond their means" in mixed.output, mixed.output
        result = CliRunner().invoke(cli, ["rescore", str(run), "--rewards", "mean_certainty_plugin"])
        assert result.exit_code == 0, result.output
        data = json.loads((run / "rescore.json").read_text())
        assert data["rewards"]["mean_certainty_plugin"]["mean"] == pytest.approx(1.0)
    finally:
        _registered.pop("last_token_certainty", None)
        _registered.pop("mean_certainty_plugin", None)
