"""`assay sharpen`: each problem trained on alone; the result file's figures are checked
against the run folders they came from (metrics, stored rollouts, the final checkpoint)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import forked_cli
import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.lab import sharpen  # noqa: E402
from assay.lab.experiment import LabError  # noqa: E402

KEYS = {"task", "initial_greedy", "final_greedy", "initial_answer", "final_answer",
        "initial_majority_share", "trajectory"}


def _assay(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return forked_cli.run([*args], timeout=timeout)


def _run_config(run: Path):
    import yaml

    from assay.envs import get_env
    from assay.training import resolve

    config = resolve(base=yaml.safe_load((run / "config.yaml").read_text()))
    return config, get_env(config.env, **config.env_options)


@pytest.mark.slow
def test_sharpen_end_to_end(tmp_path):
    """The smoke preset, then every figure of its result
    against the run folders; the report re-rendered; a second run keeps every problem.
    One test, so that the runs are trained once however pytest-xdist spreads the tests."""
    from assay.lab import registry

    out = tmp_path / "out"
    proc = _assay("sharpen", "--preset", "smoke", "--quiet", "--jobs", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "sharpen.json").read_text())
    check_counts(result)
    assert f"{result['kept']} of {result['problems']}" in proc.stdout  # the reading
    check_problems_drawn(out, result)
    for problem in result["per_problem"]:
        check_problem(out, result, problem)
    assert (out / "report.html").is_file() and (out / "sharpen.png").is_file()
    check_the_reading_follows_the_figures(result, out)
    (out / "report.html").unlink()
    assert registry.render(out).startswith("Sharpening")  # what `assay report` does
    assert "Sharpening" in (out / "report.html").read_text()

    # again into the same folder: nothing is trained again, and the result is the same
    stamps = {p["run"]: (out / p["run"] / "metrics.jsonl").stat().st_mtime_ns
              for p in result["per_problem"]}
    again = sharpen.run(preset="smoke", out=out, jobs=1, quiet=True)
    assert again["per_problem"] == result["per_problem"]
    assert all((out / r / "metrics.jsonl").stat().st_mtime_ns == t for r, t in stamps.items())
    # other settings into the same folder are refused
    with pytest.raises(LabError, match="other settings"):
        sharpen.run(preset="smoke", out=out, jobs=1, quiet=True, sets={"learning_rate": "1e-3"})


def check_counts(result: dict) -> None:
    assert {"problems", "kept", "wrong_to_right", "right_to_wrong", "per_problem"} <= set(result)
    per = result["per_problem"]
    assert result["problems"] == len(per) == sharpen.PRESETS["smoke"]["problems"]
    flips = [(p["initial_greedy"], p["final_greedy"]) for p in per]
    assert result["kept"] == sum(a == b for a, b in flips)
    assert result["wrong_to_right"] == flips.count((False, True))
    assert result["right_to_wrong"] == flips.count((True, False))
    assert result["kept"] + result["wrong_to_right"] + result["right_to_wrong"] == len(per)
    assert result["same_majority_answer"] == sum(p["same_majority_answer"] for p in per)


def check_problems_drawn(out: Path, result: dict) -> None:
    """The problems are the seeded draw, one per run folder, in a one-line task file."""
    config, env = _run_config(out / result["per_problem"][0]["run"])
    drawn = env.generate(result["problems"], seed=sharpen.PROBLEM_SEED + result["seed"])
    assert [p["task"] for p in result["per_problem"]] == [t.id for t in drawn]
    for p, task in zip(result["per_problem"], drawn, strict=True):
        run = out / p["run"]
        assert run == out / "runs" / sharpen.folder_name(task.id)
        lines = (run / sharpen.TASK_FILE).read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0]) == task.to_dict()
    env.close()


def check_problem(out: Path, result: dict, p: dict) -> None:
    """One problem's figures against its run folder."""
    from assay.organism.model import greedy_replies
    from assay.training import checkpoint
    from assay.training.policy import load_policy, resolve_model_path
    from assay.training.rollout_store import FILENAME, read_rollouts
    from assay.training.tracking import read_metrics

    steps = result["steps"]
    assert KEYS <= set(p)
    run = out / p["run"]
    config, env = _run_config(run)
    task_file = str(run / sharpen.TASK_FILE)
    # trained on that problem alone, validated on it, one prompt a step
    assert config.train_file == config.val_file == task_file
    assert config.prompts_per_step == 1 and config.steps == steps
    assert config.env_options.get("vote_key") == "value"
    (task,) = env.load(task_file)
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    # initial greedy: the trainer's own validation before step 1 agrees
    assert rows[0]["val_greedy_accuracy"] == float(p["initial_greedy"])
    # the trajectory: recomputed from the stored rollouts, step by step
    stored = read_rollouts(run / FILENAME)
    assert len(p["trajectory"]) == steps == len(p["trajectory_correct"])
    for step, share, right in zip(range(1, steps + 1), p["trajectory"], p["trajectory_correct"],
                                  strict=True):
        group = [r for r in stored if r["step"] == step]
        assert len(group) == config.group_size
        keys = [None if r["answer"] is None else env.answer_key(task, r["answer"]) for r in group]
        counts = [keys.count(k) for k in keys if k is not None]
        assert share == (max(counts) / len(group) if counts else 0.0)
        # the majority's correctness is the trainer's label_accuracy of that step
        assert float(right) == rows[step - 1]["label_accuracy"]
    assert p["initial_majority_share"] == p["trajectory"][0]
    assert p["final_majority_share"] == p["trajectory"][-1]
    # greedy answers, decoded independently (transformers' generate): the initial model and
    # the final checkpoint, which holds the policy after the last update
    last = checkpoint.latest(run)
    assert last == checkpoint.checkpoint_dir(run, steps)
    for path, answer, correct in (
        (resolve_model_path(config.model, config.prior, quiet=True), p["initial_answer"],
         p["initial_greedy"]),
        (str(last), p["final_answer"], p["final_greedy"]),
    ):
        model, tokenizer = load_policy(path, native=False)  # transformers' own model
        (reply,) = greedy_replies(model, tokenizer, [task.prompt], config.max_new_tokens)
        assert env.extract(reply) == answer
        assert env.verify(task, reply).correct == correct
    env.close()


def test_a_reward_that_needs_labels_is_refused(tmp_path):
    proc = _assay("sharpen", "--reward", "verifier", "--out", str(tmp_path / "x"), timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "external" in lines[0] and "intrinsic" in lines[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("kwargs, words", [
    ({"reward": "0.5*verifier + 0.5*majority_vote"}, "intrinsic"),
    ({"reward": "nonsense"}, "nonsense"),
    ({"problems": 0}, "--problems"),
    ({"steps": 0}, "--steps"),
    ({"jobs": 0}, "--jobs"),
    ({"preset": "huge"}, "preset"),
    ({"sets": {"group_size": "1"}}, "group_size"),
])
def test_bad_values_fail_before_anything_trains(tmp_path, kwargs, words):
    with pytest.raises(LabError, match=words) as caught:
        sharpen.run(out=tmp_path / "x", quiet=True, **kwargs)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "x").exists()


def test_majority_trajectory_counts_answers_by_key():
    """Answers equal by value agree; no answer never wins; ties go to the first seen."""
    from assay.envs import get_env

    env = get_env("countdown", prompt_style="compact", vote_key="value")
    task = env.make_task({"numbers": [5, 1, 2], "target": 7})

    def row(step, index, answer, status):
        return {"step": step, "prompt": 0, "index": index, "answer": answer, "status": status}

    rows = [row(1, 0, "5+1*2", "correct"), row(1, 1, "2*1+5", "correct"),
            row(1, 2, "5+1+2", "incorrect"), row(1, 3, None, "invalid"),
            row(2, 0, None, "invalid"), row(2, 1, None, "invalid"),
            row(3, 1, "5*1+2", "correct"), row(3, 0, "5-1-2", "incorrect")]
    got = sharpen.majority_trajectory(rows, env, task, 3)
    assert [g["share"] for g in got] == [0.5, 0.0, 0.5]
    assert [g["correct"] for g in got] == [True, False, False]  # step 3: index 0 seen first
    assert got[0]["answer"] == "5+1*2" and got[1]["answer"] is None
    with pytest.raises(Exception, match="step 4"):
        sharpen.majority_trajectory(rows, env, task, 4)


def test_run_all_keeps_the_call_order_with_workers():
    from assay.lab.workers import run_all

    seen = []
    got = run_all(sharpen.folder_name, [{"task_id": f"a b/{i}"} for i in range(5)], jobs=2,
                  done=lambda i, r: seen.append(i))
    assert got == [f"a_b_{i}" for i in range(5)] and sorted(seen) == list(range(5))


def check_the_reading_follows_the_figures(result, out):
    """The shares rose: "sharpened the answer the model already preferred" only where most
    problems kept their first majority answer (it was said on 0 of 2)."""
    import copy

    for same, says, never in ((0, "on the others the majority moved to another answer", "already preferred"),
                              (len(result["per_problem"]), "already preferred", "moved to another")):
        changed = copy.deepcopy(result)
        for p in changed["per_problem"]:
            p["initial_majority_share"], p["final_majority_share"] = 0.4, 0.95
        changed["same_majority_answer"] = same
        text = " ".join(sharpen.section(changed, out).reading)
        assert says in text and never not in text, text
