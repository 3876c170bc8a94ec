"""`assay ttt`: test-time training beside training on disjoint tasks; the result file's
figures are checked against the two run folders and task files they came from."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import forked_cli
import pytest

os.environ.setdefault("ASSAY_CACHE", os.path.join(tempfile.gettempdir(), "assay-test-cache"))

from assay.lab import ttt  # noqa: E402
from assay.lab.experiment import LabError  # noqa: E402


def _assay(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return forked_cli.run([*args], timeout=timeout)


def _config(run: Path):
    import yaml

    from assay.training import resolve

    return resolve(base=yaml.safe_load((run / "config.yaml").read_text()))


def test_ttt_end_to_end(tmp_path):
    """The smoke preset, then every figure of its result against the two run folders and
    the task files; the report re-rendered. One test, so that the runs are trained once
    however pytest-xdist spreads the tests."""
    from assay.lab import registry

    out = tmp_path / "out"
    proc = _assay("ttt", "--preset", "smoke", "--quiet", "--jobs", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "ttt.json").read_text())
    check_figures(out, result)
    assert f"{result['before']:.3f} to {result['after']:.3f}" in proc.stdout  # the reading
    check_tasks(out, result)
    assert (out / "report.html").is_file() and (out / "ttt.png").is_file()
    (out / "report.html").unlink()
    assert registry.render(out).startswith("Test-time training\n")  # what `assay report` does
    assert "Test-time training" in (out / "report.html").read_text()
    # other settings into the same folder are refused
    with pytest.raises(LabError, match="other settings"):
        ttt.run(preset="smoke", out=out, jobs=1, quiet=True, sets={"learning_rate": "1e-3"})


def check_figures(out: Path, result: dict) -> None:
    """before, after, after_disjoint: the two runs' validations, exactly."""
    from assay.training.tracking import read_metrics

    assert {"before", "after", "after_disjoint", "steps"} <= set(result)
    steps = result["steps"]
    assert steps == ttt.PRESETS["smoke"]["steps"]
    runs = {name: read_metrics(out / "runs" / name) for name in ttt.RUNS}
    for name, rows in runs.items():
        # steps + 1 trainer steps: the validation before the last one follows `steps` updates
        assert [r["step"] for r in rows] == list(range(1, steps + 2)), name
        assert rows[0]["val_accuracy"] is not None and rows[-1]["val_accuracy"] is not None
    first, last = runs["ttt"][0], runs["ttt"][-1]
    assert result["before"] == first["val_accuracy"] == runs["disjoint"][0]["val_accuracy"]
    assert result["before_greedy"] == first["val_greedy_accuracy"]
    assert result["after"] == last["val_accuracy"]
    assert result["after_greedy"] == last["val_greedy_accuracy"]
    assert result["after_disjoint"] == runs["disjoint"][-1]["val_accuracy"]
    assert result["after_disjoint_greedy"] == runs["disjoint"][-1]["val_greedy_accuracy"]
    assert result["safe"] == (result["after"] >= result["before"])
    assert result["helped"] == (result["after"] > result["before"])
    for name, rows in runs.items():
        evaluated = [(r["step"] - 1, r["val_accuracy"]) for r in rows
                     if r.get("val_accuracy") is not None]
        assert [(c["updates"], c["val_accuracy"]) for c in result["curves"][name]] == evaluated


def check_tasks(out: Path, result: dict) -> None:
    """One run trains on the evaluation tasks, the other on as many disjoint ones."""
    from assay.envs import get_env

    configs = {name: _config(out / "runs" / name) for name in ttt.RUNS}
    eval_file, train_file = out / "tasks" / "eval.jsonl", out / "tasks" / "train.jsonl"
    assert configs["ttt"].train_file == configs["ttt"].val_file == str(eval_file)
    assert configs["disjoint"].train_file == str(train_file)
    assert configs["disjoint"].val_file == str(eval_file)
    # the same settings otherwise: reward, steps, seed, every training option
    a, b = (configs[name].to_dict() for name in ttt.RUNS)
    assert {k for k in a if a[k] != b[k]} == {"train_file", "out"}
    assert a["reward"] == "majority_vote" and a["steps"] == result["steps"] + 1
    env = get_env(a["env"], **a["env_options"])
    evaluation, training = env.load(eval_file), env.load(train_file)
    assert len(evaluation) == len(training) == result["eval_tasks"] == a["val_size"]
    assert not {t.prompt for t in evaluation} & {t.prompt for t in training}
    # the evaluation tasks are the trainer's own validation draw for this seed
    drawn = env.generate(a["val_size"], seed=ttt.VAL_SEED + a["seed"])
    assert [t.to_dict() for t in evaluation] == [t.to_dict() for t in drawn]


def test_a_reward_that_needs_labels_is_refused(tmp_path):
    proc = _assay("ttt", "--reward", "verifier", "--out", str(tmp_path / "x"), timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "external" in lines[0] and "intrinsic" in lines[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("kwargs, words", [
    ({"reward": "self_verify"}, "intrinsic"),
    ({"reward": "0.5*verifier + 0.5*majority_vote"}, "intrinsic"),
    ({"reward": "random"}, "intrinsic"),
    ({"reward": "nonsense"}, "nonsense"),
    ({"steps": 0}, "--steps"),
    ({"jobs": 0}, "--jobs"),
    ({"steps": 5, "sets": {"eval_every": "2"}}, "must divide"),
    ({"sets": {"val_size": "0"}}, "val_size"),
])
def test_bad_values_fail_before_anything_trains(tmp_path, kwargs, words):
    with pytest.raises(LabError, match=words) as caught:
        ttt.run(out=tmp_path / "x", quiet=True, **kwargs)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "x").exists()


def test_steps_off_the_presets_spacing_evaluate_before_and_after():
    preset = ttt.PRESETS["default"]["sets"]
    assert ttt.run_settings(preset, 40, {})["eval_every"] == "10"
    assert ttt.run_settings(preset, 15, {})["eval_every"] == "15"  # before and after only
    assert ttt.run_settings(preset, 15, {"eval_every": "5"})["eval_every"] == "5"
    assert ttt.run_settings({}, 7, {})["eval_every"] == "7"


def test_the_disjoint_tasks_share_no_prompt():
    from assay.envs import get_env

    env = get_env("countdown", prompt_style="compact", min_numbers=3, max_numbers=3,
                  min_value=1, max_value=3, min_target=0, max_target=999)
    evaluation, training = ttt.task_sets(env, 20, seed=0)
    assert len(evaluation) == len(training) == 20
    assert not {t.prompt for t in evaluation} & {t.prompt for t in training}


def test_the_figures_come_from_the_right_evaluations():
    """Distinct numbers everywhere: each figure must be read from its own evaluation."""
    rows = [{"step": s, "val_accuracy": a, "val_greedy_accuracy": g}
            for s, a, g in ((1, 0.30, 0.40), (3, 0.31, 0.41), (5, 0.32, 0.42))]
    other = [{"step": s, "val_accuracy": a, "val_greedy_accuracy": g}
             for s, a, g in ((1, 0.30, 0.40), (3, 0.21, 0.33), (5, 0.25, 0.35))]
    curves = {"ttt": ttt.evaluations(rows + [{"step": 2}]), "disjoint": ttt.evaluations(other)}
    assert [c["updates"] for c in curves["ttt"]] == [0, 2, 4]
    got = ttt.figures(curves)
    assert got == {"before": 0.30, "after": 0.32, "after_disjoint": 0.25,
                   "before_greedy": 0.40, "after_greedy": 0.42, "after_disjoint_greedy": 0.35,
                   "safe": True, "helped": True}
    fell = ttt.figures({"ttt": curves["disjoint"], "disjoint": curves["ttt"]})
    assert fell["safe"] is False and fell["helped"] is False
    level = ttt.figures({"ttt": curves["ttt"][:1], "disjoint": curves["ttt"]})
    assert level["safe"] is True and level["helped"] is False


def _result(before, after, other, bg, ag, og=0.5) -> dict:
    return {"reward": "majority_vote", "eval_tasks": 16, "val_samples": 2, "steps": 4,
            "before": before, "after": after, "after_disjoint": other,
            "before_greedy": bg, "after_greedy": ag, "after_disjoint_greedy": og}


@pytest.mark.parametrize("figures, says, never", [
    # the tester's run: sampled and greedy both fell; nothing may say sampled rose
    ((0.03125, 0.0, 0.0, 0.125, 0.0625), ["from 0.031 to 0.000 (-0.031)", "not safe",
                                          "ended 0.031 below", "Greedy accuracy fell too"],
     ["rose", "helped", "level"]),
    ((0.2, 0.3, 0.25, 0.5, 0.4), ["moved sampled", "safe and helped: +0.100, more than "
                                  "training on other tasks (+0.050)",
                                  "Greedy accuracy fell (0.500 → 0.400) while sampled "
                                  "accuracy rose"], ["not safe", "fell too", "level"]),
    ((0.2, 0.2, 0.25, 0.5, 0.4), ["left sampled accuracy", "safe (level) but did not help: "
                                  "+0.000, less than training on other tasks (+0.050)",
                                  "while sampled accuracy stayed level"],
     ["rose", "not safe", "helped:"]),
    ((0.2, 0.2, 0.1, 0.5, 0.5), ["safe (level) but did not help: +0.000, more than training "
                                 "on other tasks (-0.100)"], ["Greedy accuracy", "rose"]),
    ((0.2, 0.3, 0.3, 0.4, 0.5), ["safe and helped: +0.100, as much as training on other "
                                 "tasks (+0.100)"], ["Greedy accuracy", "not safe"]),
    ((0.3, 0.2, 0.3, 0.4, 0.5), ["not safe", "Greedy accuracy rose (0.400 → 0.500) while "
                                 "sampled accuracy fell"], ["helped", "fell too"]),
    ((0.3, 0.2, 0.3, 0.4, 0.4), ["not safe"], ["Greedy accuracy", "rose"]),
    # figures that differ below the third decimal are printed far enough to differ
    ((0.12504, 0.12512, 0.12504, 0.5, 0.5), ["from 0.1250 to 0.1251 (+0.0001)",
                                             "safe and helped: +0.0001, more than training "
                                             "on other tasks (+0.0000)"], ["+0.000,"]),
])
def test_the_reading_says_what_the_figures_did(tmp_path, figures, says, never):
    """Each sentence of the reading is decided on the figures it prints: a sentence
    about greedy accuracy never says sampled accuracy rose when it fell (or stayed)."""
    text = "\n".join(ttt.section(_result(*figures), tmp_path).reading)
    for words in says:
        assert words in text, text
    for words in never:
        assert words not in text, text
    before, after = figures[0], figures[1]
    if after <= before:
        assert "sampled accuracy rose" not in text
    if after >= before:
        assert "sampled accuracy fell" not in text
